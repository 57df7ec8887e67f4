//! Workloads measured by the benchmarks: our server core and Linux doing the same thing.
