"""Data contracts: what a table must look like before anything downstream may read it."""
