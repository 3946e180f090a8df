//! calc's expressions: a parser and an evaluator over arbitrary-precision
//! integers, with Python's semantics, bounded before anything is computed.
//!
//! Grammar, loosest first (Python's, integers only):
//!
//! ```text
//! sum     := product (('+' | '-') product)*
//! product := unary (('*' | '/' | '//' | '%') unary)*
//! unary   := ('-' | '+') unary | power
//! power   := atom ('**' unary)?          right-associative
//! atom    := DIGITS | '(' sum ')'
//! ```
//!
//! So `**` binds tighter than a unary minus on its left (`-2 ** 2` is -4)
//! and looser than one on its right (`2 ** -1` parses, and is refused as a
//! negative exponent). `/` (and `//`) and `%` floor, as Python's `//` and
//! `%` do: `-7 / 2` is -4, `-7 % 2` is 1, `7 % -2` is -1.
//!
//! A line is first parsed whole ([`parse`]), so a syntax error is reported
//! before any arithmetic, as Python does, then evaluated ([`evaluate`])
//! left to right. Before each operation the evaluator estimates, from its
//! operands' sizes, the size of the result and the cost of computing it:
//!
//! - a result estimated over `max_digits` decimal digits is refused at once
//!   (`2 ** 10 ** 9` answers `result too large` without computing a bit of
//!   it), and the exact answer is checked again once written out;
//! - an operation that would take the running cost past the caller's
//!   budget stops the evaluation with [`CalcError::OverBudget`]: the session
//!   evaluates with a small budget on its own thread and, when that is not
//!   enough, again with no budget as a computation off the event loop.

use std::fmt;

use num_bigint::{BigInt, Sign};
use num_integer::Integer;

/// The longest expression line, in bytes: far more than anyone types, and
/// the literals it can hold (4,096 digits) cost microseconds to parse.
pub const MAX_LINE: usize = 4096;

/// The deepest nesting of parentheses, unary signs and right-hand sides of
/// `**`: each is a level of recursion in the parser and the evaluator, and
/// 64 levels stay far inside any thread's stack (Python's own limit, near
/// 200, is about the same order).
pub const MAX_DEPTH: usize = 64;

/// The result size allowed by default, in decimal digits (`--max-digits`):
/// a 100,000-digit answer is ~100 KB on the wire and milliseconds to compute.
pub const DEFAULT_MAX_DIGITS: u32 = 100_000;

/// log2(10): bits per decimal digit.
const LOG2_10: f64 = std::f64::consts::LOG2_10;

/// Bits of slack over `max_digits × log2(10)` that an estimate may show
/// before it is refused: estimates are rounded, the exact check follows.
const SLACK_BITS: f64 = 8.0;

/// Why a line has no integer answer. `Display` is the text after `ERR `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    /// The line is not an expression; the 1-based column of the first
    /// byte that does not fit (one past the end when it ends too soon).
    #[error("syntax error at column {0}")]
    Syntax(usize),
    /// `/` or `%` by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// `**` with a negative exponent (Python's answer would not be an
    /// integer).
    #[error("negative exponent")]
    NegativeExponent,
    /// The result, or a value on the way to it, would pass `max_digits`.
    #[error("result too large")]
    TooLarge,
    /// The line is longer than [`MAX_LINE`].
    #[error("line too long")]
    LineTooLong,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting too deep")]
    TooDeep,
    /// Not an answer: the next operation would pass the evaluation's cost
    /// budget (the caller evaluates again with a larger one, elsewhere).
    #[error("over budget")]
    OverBudget,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    nodes: Vec<Node>,
    root: usize,
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    FloorDiv,
    Mod,
    Pow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Number(BigInt),
    Neg(usize),
    Binary(Op, usize, usize),
}

/// The limits an evaluation runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most decimal digits a result (or a value on the way) may have.
    pub max_digits: u32,
    /// The most cost ([`Cost`] units) the evaluation may spend, writing the
    /// answer out included; `u64::MAX`: no bound.
    pub budget: u64,
}

/// Cost units: one is about one 64-bit word multiplication (a nanosecond
/// or so). Schoolbook estimates, so large products are overestimated (the
/// library uses Karatsuba and Toom-3): a bound, not a prediction.
pub type Cost = u64;

/// Parses and evaluates `line` (without its line end): the decimal answer.
pub fn calculate(line: &[u8], limits: Limits) -> Result<String, CalcError> {
    evaluate(&parse(line)?, limits)
}

/// Parses one expression line.
pub fn parse(line: &[u8]) -> Result<Expr, CalcError> {
    if line.len() > MAX_LINE {
        return Err(CalcError::LineTooLong);
    }
    let mut p = Parser {
        line,
        pos: 0,
        nodes: Vec::new(),
        depth: 0,
    };
    let root = p.sum()?;
    p.skip_space();
    if p.pos < line.len() {
        return Err(p.error());
    }
    Ok(Expr {
        nodes: p.nodes,
        root,
    })
}

struct Parser<'a> {
    line: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    depth: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self
            .line
            .get(self.pos)
            .is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            self.pos += 1;
        }
    }

    /// A syntax error at the current byte (1-based).
    fn error(&self) -> CalcError {
        CalcError::Syntax(self.pos + 1)
    }

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Whether `token` comes next (after spaces); consumes it if so.
    fn eat(&mut self, token: &[u8]) -> bool {
        self.skip_space();
        if self.line[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn deeper(&mut self) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(CalcError::TooDeep)
        } else {
            Ok(())
        }
    }

    fn sum(&mut self) -> Result<usize, CalcError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat(b"+") {
                Op::Add
            } else if self.eat(b"-") {
                Op::Sub
            } else {
                return Ok(left);
            };
            let right = self.product()?;
            left = self.push(Node::Binary(op, left, right));
        }
    }

    fn product(&mut self) -> Result<usize, CalcError> {
        let mut left = self.unary()?;
        loop {
            // `**` is a power, not a product: leave it to `power`.
            self.skip_space();
            let rest = &self.line[self.pos..];
            let op = if rest.starts_with(b"**") {
                return Ok(left);
            } else if self.eat(b"*") {
                Op::Mul
            } else if self.eat(b"//") || self.eat(b"/") {
                Op::FloorDiv
            } else if self.eat(b"%") {
                Op::Mod
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = self.push(Node::Binary(op, left, right));
        }
    }

    fn unary(&mut self) -> Result<usize, CalcError> {
        if self.eat(b"-") {
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            Ok(self.push(Node::Neg(inner)))
        } else if self.eat(b"+") {
            self.deeper()?;
            let inner = self.unary();
            self.depth -= 1;
            inner
        } else {
            self.power()
        }
    }

    fn power(&mut self) -> Result<usize, CalcError> {
        let base = self.atom()?;
        if !self.eat(b"**") {
            return Ok(base);
        }
        self.deeper()?;
        let exponent = self.unary()?;
        self.depth -= 1;
        Ok(self.push(Node::Binary(Op::Pow, base, exponent)))
    }

    fn atom(&mut self) -> Result<usize, CalcError> {
        self.skip_space();
        let start = self.pos;
        match self.line.get(self.pos) {
            Some(b'0'..=b'9') => {
                while self.line.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                let digits = &self.line[start..self.pos];
                // Python refuses `007`: leading zeros only in zero itself.
                if digits[0] == b'0' && digits.iter().any(|d| *d != b'0') {
                    return Err(CalcError::Syntax(start + 1));
                }
                let n = BigInt::parse_bytes(digits, 10).ok_or(CalcError::Syntax(start + 1))?;
                Ok(self.push(Node::Number(n)))
            }
            Some(b'(') => {
                self.pos += 1;
                self.deeper()?;
                let inner = self.sum()?;
                self.depth -= 1;
                if !self.eat(b")") {
                    return Err(self.error());
                }
                Ok(inner)
            }
            _ => Err(self.error()),
        }
    }
}

/// Evaluates `expr` under `limits`: the decimal answer.
pub fn evaluate(expr: &Expr, limits: Limits) -> Result<String, CalcError> {
    let mut e = Evaluator {
        expr,
        limit_bits: f64::from(limits.max_digits) * LOG2_10 + SLACK_BITS,
        budget: limits.budget,
        spent: 0,
    };
    let value = e.value()?;
    // Writing a number out in decimal costs about as much as squaring it.
    let w = words(&value);
    e.spend(w.saturating_mul(w))?;
    let text = value.to_string();
    let digits = text.len() - usize::from(value.sign() == Sign::Minus);
    if digits > limits.max_digits as usize {
        return Err(CalcError::TooLarge);
    }
    Ok(text)
}

struct Evaluator<'a> {
    expr: &'a Expr,
    limit_bits: f64,
    budget: Cost,
    spent: Cost,
}

impl Evaluator<'_> {
    fn spend(&mut self, cost: Cost) -> Result<(), CalcError> {
        self.spent = self.spent.saturating_add(cost);
        if self.spent > self.budget {
            Err(CalcError::OverBudget)
        } else {
            Ok(())
        }
    }

    /// Refuses a value whose estimated size (log2 of its magnitude) passes
    /// the limit.
    fn fits(&self, log2: f64) -> Result<(), CalcError> {
        if log2 > self.limit_bits {
            Err(CalcError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// The nodes are in post-order (each after its operands), so one pass
    /// with a stack evaluates them left to right, with no recursion however
    /// long a chain such as `1 + 1 + ... + 1` is.
    fn value(&mut self) -> Result<BigInt, CalcError> {
        let mut stack: Vec<BigInt> = Vec::new();
        for node in &self.expr.nodes {
            let v = match node {
                Node::Number(n) => {
                    self.fits(log2(n))?;
                    n.clone()
                }
                Node::Neg(_) => -stack.pop().expect("post-order: operand first"),
                Node::Binary(op, _, _) => {
                    let b = stack.pop().expect("post-order: operands first");
                    let a = stack.pop().expect("post-order: operands first");
                    self.apply(*op, a, b)?
                }
            };
            stack.push(v);
        }
        Ok(stack.pop().expect("an expression has a value"))
    }

    fn apply(&mut self, op: Op, a: BigInt, b: BigInt) -> Result<BigInt, CalcError> {
        let (wa, wb) = (words(&a), words(&b));
        match op {
            Op::Add | Op::Sub => {
                self.fits(log2(&a).max(log2(&b)) + 1.0)?;
                self.spend(wa.max(wb))?;
                Ok(if op == Op::Add { a + b } else { a - b })
            }
            Op::Mul => {
                self.fits(log2(&a) + log2(&b))?;
                self.spend(wa.saturating_mul(wb))?;
                Ok(a * b)
            }
            Op::FloorDiv | Op::Mod => {
                if b.sign() == Sign::NoSign {
                    return Err(CalcError::DivisionByZero);
                }
                // The quotient is no larger than `a`, the remainder than `b`.
                self.spend(wb.saturating_mul(wa.saturating_sub(wb) + 1))?;
                Ok(if op == Op::FloorDiv {
                    a.div_floor(&b)
                } else {
                    a.mod_floor(&b)
                })
            }
            Op::Pow => self.power(a, b),
        }
    }

    fn power(&mut self, a: BigInt, b: BigInt) -> Result<BigInt, CalcError> {
        if b.sign() == Sign::Minus {
            return Err(CalcError::NegativeExponent);
        }
        let one = BigInt::from(1);
        // 0, 1 and -1 stay small whatever the exponent.
        if a.sign() == Sign::NoSign {
            return Ok(if b.sign() == Sign::NoSign { one } else { a });
        }
        if a == one {
            return Ok(a);
        }
        if a == -one.clone() {
            return Ok(if b.is_even() { one } else { a });
        }
        // |a| ≥ 2, so the result has at least `b` bits.
        self.fits(log2(&a) * log2(&b).exp2())?;
        let e = u32::try_from(&b).map_err(|_| CalcError::TooLarge)?;
        // Squarings up to the result's size: the last costs (r/2)², the
        // ones before it a quarter of the one after.
        let r = (log2(&a) * f64::from(e) / 64.0) as u64 + 1;
        self.spend((r / 2).saturating_mul(r / 2).saturating_mul(4) / 3)?;
        Ok(a.pow(e))
    }
}

/// 64-bit words of `n`'s magnitude (at least 1).
fn words(n: &BigInt) -> u64 {
    n.bits() / 64 + 1
}

/// log2 of `n`'s magnitude (−∞ for zero), from its top 64 bits.
fn log2(n: &BigInt) -> f64 {
    let bits = n.bits();
    if bits <= 64 {
        return n
            .magnitude()
            .iter_u64_digits()
            .next()
            .map_or(f64::NEG_INFINITY, |d| (d as f64).log2());
    }
    let top = n.magnitude() >> (bits - 64);
    let top = top.iter_u64_digits().next().unwrap_or(1) as f64;
    top.log2() + (bits - 64) as f64
}

impl fmt::Display for Expr {
    /// The expression fully parenthesized (for tests and the fuzz target).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(e: &Expr, at: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &e.nodes[at] {
                Node::Number(n) => write!(f, "{n}"),
                Node::Neg(inner) => {
                    f.write_str("(-")?;
                    write(e, *inner, f)?;
                    f.write_str(")")
                }
                Node::Binary(op, l, r) => {
                    f.write_str("(")?;
                    write(e, *l, f)?;
                    f.write_str(match op {
                        Op::Add => " + ",
                        Op::Sub => " - ",
                        Op::Mul => " * ",
                        Op::FloorDiv => " / ",
                        Op::Mod => " % ",
                        Op::Pow => " ** ",
                    })?;
                    write(e, *r, f)?;
                    f.write_str(")")
                }
            }
        }
        write(self, self.root, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_BUDGET: Limits = Limits {
        max_digits: DEFAULT_MAX_DIGITS,
        budget: u64::MAX,
    };

    fn calc(line: &str) -> Result<String, CalcError> {
        calculate(line.as_bytes(), NO_BUDGET)
    }

    #[test]
    fn answers_match_python() {
        // Each checked with python3 (`/` written `//` there).
        let table = [
            ("1 + 2", "3"),
            ("(7 - 3) * 12 / 5", "9"),
            ("2 ** 521 - 1", "6864797660130609714981900799081393217269435300143305409394463459185543183397656052122559640661454554977296311391480858037121987999716643812574028291115057151"),
            ("10 % 3", "1"),
            ("-7 / 2", "-4"),
            ("-7 % 2", "1"),
            ("7 % -2", "-1"),
            ("7 / -2", "-4"),
            ("-7 // 2", "-4"),
            ("-2 ** 2", "-4"),
            ("(-2) ** 2", "4"),
            ("2 ** 3 ** 2", "512"),
            ("2 ** -0", "1"),
            ("--3", "3"),
            ("-+-3", "3"),
            ("0 ** 0", "1"),
            ("(-1) ** 1000001", "-1"),
            ("1 ** 100000000000000000000", "1"),
            ("0 ** 100000000000000000000", "0"),
            ("2 * 3 + 4 * 5 - 6 / 4", "25"),
            ("100 - 10 - 1", "89"),
            ("2 ** 64 * 2 ** 64", "340282366920938463463374607431768211456"),
            ("  ( ( 1 ) )  ", "1"),
            ("007 - 7", "ERR"),
            ("000", "0"),
            ("-(3 - 10) % 4", "3"),
            ("2 ** 3 * 2", "16"),
            ("-3 ** 2 * 2", "-18"),
        ];
        for (line, want) in table {
            match calc(line) {
                Ok(got) => assert_eq!(got, want, "{line}"),
                Err(e) => assert_eq!("ERR", want, "{line}: {e}"),
            }
        }
    }

    #[test]
    fn errors_say_why_and_where() {
        use CalcError::*;
        let table = [
            ("", Syntax(1)),
            ("1 +", Syntax(4)),
            ("1 + + ", Syntax(7)),
            ("(1 + 2", Syntax(7)),
            ("1 + 2)", Syntax(6)),
            ("1 x 2", Syntax(3)),
            ("2 *** 2", Syntax(5)),
            ("1.5", Syntax(2)),
            ("01", Syntax(1)),
            ("1 / 0", DivisionByZero),
            ("1 % (5 - 5)", DivisionByZero),
            ("2 ** -1", NegativeExponent),
            ("2 ** 10 ** 9", TooLarge),
            ("10 ** 100000", TooLarge),
            ("2 ** 100000000000000000000", TooLarge),
            ("10 ** 60000 * 10 ** 60000", TooLarge),
            ("1 / 0 + )", Syntax(9)),
        ];
        for (line, want) in table {
            assert_eq!(calc(line), Err(want.clone()), "{line}");
        }
        assert_eq!(calc(&"1+".repeat(2049)), Err(LineTooLong));
        assert_eq!(
            calc(&format!("{}1{}", "(".repeat(65), ")".repeat(65))),
            Err(TooDeep)
        );
        assert_eq!(
            calc(&format!("{}1{}", "(".repeat(64), ")".repeat(64))).unwrap(),
            "1"
        );
        assert_eq!(calc(&format!("{}1", "-".repeat(65))), Err(TooDeep));
        assert_eq!(
            calc("2 ** ".repeat(66).trim_end_matches("** ")),
            Err(TooDeep)
        );
        assert_eq!(calc("10 ** 99999").unwrap().len(), 100_000);
        assert_eq!(calc("-(10 ** 99999)").unwrap().len(), 100_001);
        assert_eq!(calc("10 ** 99999 * 10"), Err(TooLarge));
    }

    #[test]
    fn the_size_limit_follows_max_digits() {
        let limits = |max_digits| Limits {
            max_digits,
            budget: u64::MAX,
        };
        assert_eq!(calculate(b"99999", limits(5)).unwrap(), "99999");
        assert_eq!(calculate(b"99999 + 1", limits(5)), Err(CalcError::TooLarge));
        assert_eq!(calculate(b"123456", limits(5)), Err(CalcError::TooLarge));
        assert_eq!(calculate(b"3 ** 200000", NO_BUDGET).unwrap().len(), 95_425);
    }

    #[test]
    fn cheap_lines_fit_a_small_budget_and_heavy_ones_do_not() {
        let small = Limits {
            max_digits: DEFAULT_MAX_DIGITS,
            budget: 100_000,
        };
        for cheap in [
            "1 + 2",
            "2 ** 521 - 1",
            "10 ** 1000 / 7",
            "(7 - 3) * 12 / 5",
        ] {
            assert!(calculate(cheap.as_bytes(), small).is_ok(), "{cheap}");
        }
        for heavy in [
            "3 ** 200000",
            "10 ** 50000 * 10 ** 40000",
            "10 ** 90000 % 7",
        ] {
            assert_eq!(
                calculate(heavy.as_bytes(), small),
                Err(CalcError::OverBudget),
                "{heavy}"
            );
        }
        // The size guard answers before the budget is looked at.
        assert_eq!(calculate(b"2 ** 10 ** 9", small), Err(CalcError::TooLarge));
    }

    #[test]
    fn parse_shows_precedence_and_associativity() {
        let shown = |line: &str| parse(line.as_bytes()).unwrap().to_string();
        assert_eq!(shown("-2 ** 2"), "(-(2 ** 2))");
        assert_eq!(shown("2 ** -1"), "(2 ** (-1))");
        assert_eq!(shown("2 ** 3 ** 2"), "(2 ** (3 ** 2))");
        assert_eq!(shown("1 - 2 - 3"), "((1 - 2) - 3)");
        assert_eq!(shown("1 + 2 * 3 % 4"), "(1 + ((2 * 3) % 4))");
        assert_eq!(shown("8 / 2 / 2"), "((8 / 2) / 2)");
    }
}
