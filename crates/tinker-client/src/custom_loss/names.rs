//! torch.fx's node naming, so our graphs name nodes exactly as a traced Python loss would.

use std::collections::{HashMap, HashSet};

/// Python keywords, builtins and torch.fx's reserved names: torch.fx never names a node
/// after one of these (`sum` becomes `sum_1`).
pub(super) const ILLEGAL_NAMES: &[&str] = &[
    "False",
    "None",
    "True",
    "__build_class__",
    "__debug__",
    "__doc__",
    "__import__",
    "__loader__",
    "__name__",
    "__package__",
    "__spec__",
    "abs",
    "aiter",
    "all",
    "and",
    "anext",
    "any",
    "as",
    "ascii",
    "assert",
    "async",
    "await",
    "bin",
    "bool",
    "break",
    "breakpoint",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "class",
    "classmethod",
    "compile",
    "complex",
    "continue",
    "copyright",
    "credits",
    "def",
    "del",
    "delattr",
    "device",
    "dict",
    "dir",
    "divmod",
    "elif",
    "else",
    "enumerate",
    "eval",
    "except",
    "exec",
    "exit",
    "filter",
    "finally",
    "float",
    "for",
    "format",
    "from",
    "frozenset",
    "fx_pytree",
    "getattr",
    "global",
    "globals",
    "hasattr",
    "hash",
    "help",
    "hex",
    "id",
    "if",
    "import",
    "in",
    "inf",
    "input",
    "int",
    "is",
    "isinstance",
    "issubclass",
    "iter",
    "lambda",
    "len",
    "license",
    "list",
    "locals",
    "map",
    "max",
    "memoryview",
    "min",
    "nan",
    "next",
    "nonlocal",
    "not",
    "object",
    "oct",
    "open",
    "or",
    "ord",
    "pass",
    "pow",
    "print",
    "property",
    "pytree",
    "quit",
    "raise",
    "range",
    "repr",
    "return",
    "reversed",
    "round",
    "set",
    "setattr",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "torch",
    "try",
    "tuple",
    "type",
    "vars",
    "while",
    "with",
    "yield",
    "zip",
];

/// torch.fx's unique-name allocation (`_Namespace.create_name`).
#[derive(Debug, Default)]
pub(super) struct Namespace {
    pub(super) used: HashSet<String>,
    pub(super) base_count: HashMap<String, u64>,
}

impl Namespace {
    pub(super) fn create(&mut self, candidate: &str) -> String {
        // `^([a-zA-Z_][0-9a-zA-Z_]*?)(?:_(\d+))?$`
        let (base, num) = match candidate.rsplit_once('_') {
            Some((b, n))
                if !b.is_empty() && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) =>
            {
                (b.to_owned(), n.parse::<u64>().ok())
            }
            _ => (candidate.to_owned(), None),
        };
        let mut candidate = candidate.to_owned();
        let mut num = match num {
            Some(n) if !self.used.contains(&candidate) => n,
            _ => {
                let mut n = self.base_count.get(&base).copied().unwrap_or(0);
                if ILLEGAL_NAMES.contains(&candidate.as_str()) {
                    n += 1;
                    candidate = format!("{base}_{n}");
                }
                n
            }
        };
        while self.used.contains(&candidate) {
            num += 1;
            candidate = format!("{base}_{num}");
        }
        self.used.insert(candidate.clone());
        self.base_count.insert(base, num);
        candidate
    }
}
