//! Gorilla XOR chunk codec (placeholder until the codec lands).
