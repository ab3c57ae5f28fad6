//! `caucus bench …`: load benchmarks against real processes. Performance is measured here, never
//! asserted in tests.

pub mod enroll;
