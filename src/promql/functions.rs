//! Pure numeric kernels of PromQL functions and aggregations (placeholder).
