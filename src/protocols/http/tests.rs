//! Unit tests of the HTTP session without a driver.
