//! Fuzzes calc's expression parser and evaluator (`protocols::calc::expr`).
//!
//! Any input is parsed; a parsed expression prints fully parenthesized and
//! that text parses back to the same expression. Evaluation runs under a
//! small digit limit and a small cost budget, so it stays fast whatever the
//! input: it must answer, refuse, or stop at the budget, and an answer
//! never passes the digit limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muse::protocols::calc::expr::{self, CalcError, Limits};

/// Small enough that every input evaluates in microseconds.
const LIMITS: Limits = Limits {
    max_digits: 200,
    budget: 100_000,
};

fuzz_target!(|data: &[u8]| {
    let parsed = match expr::parse(data) {
        Ok(e) => e,
        Err(CalcError::Syntax(col)) => {
            assert!((1..=data.len() + 1).contains(&col), "column {col}");
            return;
        }
        Err(CalcError::LineTooLong) => {
            assert!(data.len() > expr::MAX_LINE);
            return;
        }
        Err(CalcError::TooDeep) => return,
        Err(e) => panic!("parse gave {e:?}"),
    };
    let shown = parsed.to_string();
    if shown.len() <= expr::MAX_LINE {
        match expr::parse(shown.as_bytes()) {
            Ok(again) => assert_eq!(again, parsed, "{shown}"),
            // The parentheses added may pass the nesting limit.
            Err(CalcError::TooDeep) => {}
            Err(e) => panic!("{shown}: {e:?}"),
        }
    }
    match expr::evaluate(&parsed, LIMITS) {
        Ok(n) => assert!(n.trim_start_matches('-').len() <= LIMITS.max_digits as usize),
        Err(
            CalcError::DivisionByZero
            | CalcError::NegativeExponent
            | CalcError::TooLarge
            | CalcError::OverBudget,
        ) => {}
        Err(e) => panic!("evaluate gave {e:?}"),
    }
});
