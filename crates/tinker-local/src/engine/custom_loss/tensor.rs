//! The values a custom loss computes on.

/// A dense row-major f64 tensor; `shape` empty means a scalar.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A scalar.
    pub fn scalar(x: f64) -> Self {
        Self {
            shape: Vec::new(),
            data: vec![x],
        }
    }

    /// A vector.
    pub fn vector(data: Vec<f64>) -> Self {
        Self {
            shape: vec![data.len()],
            data,
        }
    }
}
