"""What several test files need, in one place each: the fresh user environment, the HTTP
receiver of alerts, the lake graph run in process, the re-execution from failure after an
outage, and the local servers the tests start."""
