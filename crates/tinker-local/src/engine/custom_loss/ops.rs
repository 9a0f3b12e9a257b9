//! The instruction set a validated graph is made of, with each operation's pointwise value
//! and derivative (torch's conventions at ties and kinks).

/// An argument: an earlier step's value or a number from the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Operand {
    Node(usize),
    Const(f64),
}

/// Elementwise operations of two broadcast arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Minimum,
    Maximum,
    Gt,
    Lt,
    Ge,
    Le,
}

impl Binary {
    pub(super) fn is_comparison(self) -> bool {
        matches!(self, Self::Gt | Self::Lt | Self::Ge | Self::Le)
    }

    pub(super) fn apply(self, a: f64, b: f64) -> f64 {
        let flag = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            Self::Add => a + b,
            Self::Sub => a - b,
            Self::Mul => a * b,
            Self::Div => a / b,
            Self::Pow => a.powf(b),
            Self::Minimum => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            Self::Maximum => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            Self::Gt => flag(a > b),
            Self::Lt => flag(a < b),
            Self::Ge => flag(a >= b),
            Self::Le => flag(a <= b),
        }
    }

    /// `(d out / d a, d out / d b)` at `(a, b)` with output `y`.
    pub(super) fn partials(self, a: f64, b: f64, y: f64) -> (f64, f64) {
        let pick = |first: bool, tie: bool| {
            if tie {
                (0.5, 0.5)
            } else if first {
                (1.0, 0.0)
            } else {
                (0.0, 1.0)
            }
        };
        match self {
            Self::Add => (1.0, 1.0),
            Self::Sub => (1.0, -1.0),
            Self::Mul => (b, a),
            Self::Div => (1.0 / b, -a / (b * b)),
            Self::Pow => {
                let da = if b == 0.0 { 0.0 } else { b * a.powf(b - 1.0) };
                let db = if a > 0.0 { y * a.ln() } else { 0.0 };
                (da, db)
            }
            Self::Minimum => pick(a < b, a == b),
            Self::Maximum => pick(a > b, a == b),
            Self::Gt | Self::Lt | Self::Ge | Self::Le => (0.0, 0.0),
        }
    }
}

/// Elementwise operations of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unary {
    Neg,
    Exp,
    Log,
    Abs,
    Sqrt,
    Sigmoid,
    Tanh,
    /// `.float()`, `.contiguous()`: values unchanged.
    Identity,
}

impl Unary {
    pub(super) fn apply(self, x: f64) -> f64 {
        match self {
            Self::Neg => -x,
            Self::Exp => x.exp(),
            Self::Log => x.ln(),
            Self::Abs => x.abs(),
            Self::Sqrt => x.sqrt(),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Tanh => x.tanh(),
            Self::Identity => x,
        }
    }

    pub(super) fn derivative(self, x: f64, y: f64) -> f64 {
        match self {
            Self::Neg => -1.0,
            Self::Exp => y,
            Self::Log => 1.0 / x,
            Self::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Self::Sqrt => 0.5 / y,
            Self::Sigmoid => y * (1.0 - y),
            Self::Tanh => 1.0 - y * y,
            Self::Identity => 1.0,
        }
    }
}

/// One node of a validated graph; its operands are indices of earlier steps.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// The `k`-th declared input.
    Input(usize),
    Binary(Binary, Operand, Operand),
    Unary(Unary, usize),
    Clamp {
        x: usize,
        min: Option<f64>,
        max: Option<f64>,
    },
    Where {
        cond: usize,
        a: Operand,
        b: Operand,
    },
    Reduce {
        mean: bool,
        x: usize,
        /// `None`: every dimension.
        dims: Option<Vec<i64>>,
        keepdim: bool,
    },
    Detach(usize),
}
