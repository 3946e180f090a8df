//! The calc protocol: its evaluator checked against Python's integers
//! (`python3 -c`) on random expressions, and the server under every
//! architecture spoken to by real TCP clients: exact answers, every error,
//! the size guard, 1,000 pipelined lines answered in order, QUIT, and on
//! the reactor family a heavy computation that does not hold up a second
//! client's cheap answer.

#[macro_use]
mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;

use muse::protocols::calc::expr::{calculate, Limits, DEFAULT_MAX_DIGITS};

/// A line-at-a-time client.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn new(server: &Server) -> Client {
        let stream = server.connect();
        Client {
            writer: stream.try_clone().expect("clone client socket"),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("send");
    }

    /// The next answer, without its CRLF.
    fn line(&mut self, server: &Server) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => server.fail("the server closed instead of answering"),
            Ok(_) => {}
            Err(e) => server.fail(&format!("reading an answer: {e}")),
        }
        match line.strip_suffix("\r\n") {
            Some(l) => l.to_string(),
            None => server.fail(&format!("answer without CRLF: {line:?}")),
        }
    }

    fn ask(&mut self, server: &Server, expr: &str) -> String {
        self.send(&format!("{expr}\n"));
        self.line(server)
    }
}

/// A reproducible pseudo-random source (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A random expression with every operator, unary minus and parentheses;
/// exponents are small non-negative literals so Python's answer is an
/// integer of reasonable size.
fn random_expr(rng: &mut Rng, depth: u32) -> String {
    if depth == 0 || rng.below(4) == 0 {
        let n = rng.below(2000);
        return if rng.below(5) == 0 {
            format!("-{n}")
        } else {
            n.to_string()
        };
    }
    let left = random_expr(rng, depth - 1);
    match rng.below(7) {
        0 => format!("{left} + {}", random_expr(rng, depth - 1)),
        1 => format!("{left} - {}", random_expr(rng, depth - 1)),
        2 => format!("{left}*{}", random_expr(rng, depth - 1)),
        3 => format!("{left} / {}", random_expr(rng, depth - 1)),
        4 => format!("{left} % {}", random_expr(rng, depth - 1)),
        5 => format!("({left}) ** {}", rng.below(6)),
        _ => format!("-({left})"),
    }
}

/// Python's answers to `exprs` (`/` is `//` there), one per expression:
/// the integer, or `ERR division by zero`.
fn python_answers(exprs: &[String]) -> Vec<String> {
    let program = "import sys\n\
        for line in sys.stdin.read().splitlines():\n\
        \x20   try:\n\
        \x20       print(eval(line.replace('/', '//')))\n\
        \x20   except ZeroDivisionError:\n\
        \x20       print('ERR division by zero')\n";
    let mut child = Command::new("python3")
        .args(["-c", program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = exprs.join("\n") + "\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(out.status.success(), "python3 failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn random_exprs(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n).map(|_| random_expr(&mut rng, 4)).collect()
}

#[test]
fn the_evaluator_agrees_with_python_on_random_expressions() {
    let exprs = random_exprs(0x9E37_79B9_7F4A_7C15, 3000);
    let want = python_answers(&exprs);
    assert_eq!(want.len(), exprs.len());
    let limits = Limits {
        max_digits: DEFAULT_MAX_DIGITS,
        budget: u64::MAX,
    };
    for (expr, want) in exprs.iter().zip(&want) {
        let got = match calculate(expr.as_bytes(), limits) {
            Ok(n) => n,
            Err(e) => format!("ERR {e}"),
        };
        assert_eq!(&got, want, "{expr}");
    }
}

#[test]
fn the_server_agrees_with_python_on_random_expressions() {
    let exprs = random_exprs(0x0123_4567_89AB_CDEF, 300);
    let want = python_answers(&exprs);
    let server = Server::start("calc", "multi-reactor", &[]);
    let mut c = Client::new(&server);
    c.send(&(exprs.join("\n") + "\n"));
    for (expr, want) in exprs.iter().zip(&want) {
        let got = c.line(&server);
        if &got != want {
            server.fail(&format!("{expr}: got {got}, want {want}"));
        }
    }
}

/// Lines and their exact answers: every kind of error among them.
const TABLE: &[(&str, &str)] = &[
    ("1 + 2", "3"),
    ("(7 - 3) * 12 / 5", "9"),
    ("2 ** 521 - 1", "6864797660130609714981900799081393217269435300143305409394463459185543183397656052122559640661454554977296311391480858037121987999716643812574028291115057151"),
    ("10 % 3", "1"),
    ("-7 / 2", "-4"),
    ("-7 % 2", "1"),
    ("7 % -2", "-1"),
    ("-2 ** 2", "-4"),
    ("2 ** 3 ** 2", "512"),
    ("  12  *  -3  ", "-36"),
    ("1 +", "ERR syntax error at column 4"),
    ("2 $ 3", "ERR syntax error at column 3"),
    ("1 / 0", "ERR division by zero"),
    ("5 % 0", "ERR division by zero"),
    ("2 ** -1", "ERR negative exponent"),
    ("2 ** 10 ** 9", "ERR result too large"),
    ("10 ** 100000", "ERR result too large"),
    ("3 ** 200000 % 1000", "1"),
    ("after the errors: 1", "ERR syntax error at column 1"),
    ("6 * 7", "42"),
];

arch_tests!(exact_answers_and_every_error, |arch| {
    let server = Server::start("calc", arch, &[]);
    let mut c = Client::new(&server);
    for (expr, want) in TABLE {
        let got = c.ask(&server, expr);
        if got != *want {
            server.fail(&format!("{expr}: got {got:?}, want {want:?}"));
        }
    }
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(c.ask(&server, &deep), "ERR nesting too deep");
    let long = "1+".repeat(3000) + "1";
    assert_eq!(c.ask(&server, &long), "ERR line too long");
    // CRLF works as well as LF; a blank line gets no answer.
    c.send("\r\n   \n4 * 4\r\n");
    assert_eq!(c.line(&server), "16");
    assert_eq!(c.ask(&server, "QUIT"), "BYE");
    let mut rest = Vec::new();
    match c.reader.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => {}
        other => server.fail(&format!("after BYE: {other:?} {rest:?}")),
    }
});

arch_tests!(a_thousand_pipelined_lines_are_answered_in_order, |arch| {
    let server = Server::start("calc", arch, &[]);
    let mut c = Client::new(&server);
    let lines: String = (0..1000).map(|i| format!("{i} * {i} - 1\n")).collect();
    c.send(&(lines + "QUIT\n"));
    for i in 0..1000i64 {
        let got = c.line(&server);
        if got != (i * i - 1).to_string() {
            server.fail(&format!("line {i}: got {got}"));
        }
    }
    assert_eq!(c.line(&server), "BYE");
});

arch_tests!(
    a_heavy_computation_does_not_hold_up_another_client,
    [
        reactor,
        multi_reactor,
        prefork_reactor,
        reactor_pool,
        async_
    ],
    |arch| {
        // 3 ** 2000000 has 954,243 digits: ~0.1 s of CPU per line.
        let server = Server::start("calc", arch, &["--max-digits", "1000000"]);
        let mut heavy = Client::new(&server);
        heavy.send(&"3 ** 2000000 % 1000\n".repeat(4));
        let mut cheap = Client::new(&server);
        assert_eq!(cheap.ask(&server, "1 + 1"), "2");
        assert_eq!(cheap.ask(&server, "2 ** 64"), "18446744073709551616");
        // Both cheap answers came while the heavy lines were still being
        // computed: none of their answers has arrived yet.
        heavy.writer.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match heavy.reader.get_mut().read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => server.fail(&format!("a heavy answer came first: {other:?}")),
        }
        heavy.writer.set_nonblocking(false).unwrap();
        assert_eq!(heavy.line(&server), "1");
    }
);
