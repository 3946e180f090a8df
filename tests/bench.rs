//! `muse bench` end to end: a short run produces a complete, well-formed
//! report (table, JSON, SVG); `--spawn` and `--against` drive servers that
//! are not muse's architectures; a server that corrupts bytes or drops them
//! is reported with errors, not with a rate. No assertion is about speed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};

fn muse() -> &'static str {
    env!("CARGO_BIN_EXE_muse")
}

/// A scratch directory removed at drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("muse-bench-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(args: &[&str]) -> Output {
    let out = Command::new(muse())
        .arg("bench")
        .args(args)
        .output()
        .expect("run muse bench");
    if !out.status.success() {
        panic!(
            "muse bench {args:?} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("valid JSON")
}

fn server<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["servers"]
        .as_array()
        .expect("servers array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {name} in {report:#}"))
}

/// A tiny server in this test process, one thread per connection, that
/// answers each read with `answer(bytes)`. Threads end when the test
/// process does.
fn tiny_server(answer: fn(&mut [u8], u64)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut count = 0u64;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    count += 1;
                    answer(&mut buf[..n], count);
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

const SHORT: &[&str] = &[
    "--duration",
    "0.5",
    "--warmup",
    "0.2",
    "--load-threads",
    "1",
];

#[test]
fn a_short_run_makes_a_complete_report() {
    let dir = Scratch::new("report");
    let (json_path, svg_path) = (dir.path("r.json"), dir.path("r.svg"));
    let mut args = vec![
        "echo",
        "--arch",
        "reactor,thread-pool,prefork-reactor",
        "--repeat",
        "2",
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--json", &json_path, "--svg", &svg_path]);
    let out = bench(&args);
    let table = String::from_utf8_lossy(&out.stdout);
    for name in ["muse/reactor", "muse/thread-pool", "muse/prefork-reactor"] {
        assert!(table.contains(name), "table names {name}:\n{table}");
    }
    let report = json(&json_path);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["protocol"], "echo");
    assert_eq!(report["scenario"], "rr");
    assert_eq!(report["servers"].as_array().unwrap().len(), 3);
    for name in ["muse/reactor", "muse/thread-pool", "muse/prefork-reactor"] {
        let s = server(&report, name);
        let runs = s["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{name} ran twice");
        for run in runs {
            assert!(
                run["load"]["requests"].as_u64().unwrap() > 0,
                "{name} answered"
            );
            assert_eq!(run["load"]["errors"]["mismatch"], 0);
            let server = &run["server"];
            assert!(
                server["peak_rss_kib"].as_u64().unwrap() > 0,
                "{name} RSS sampled"
            );
            assert!(server["peak_processes"].as_u64().unwrap() >= 1);
            assert!(server["peak_threads"].as_u64().unwrap() >= 1);
        }
        assert!(s["median_rate"].as_f64().unwrap() > 0.0);
        // Requests per server CPU-second: the median (of two, their mean)
        // of each run's requests / CPU seconds.
        let per_run: Vec<f64> = runs
            .iter()
            .map(|r| {
                r["load"]["requests"].as_f64().unwrap()
                    / r["server"]["cpu_seconds"].as_f64().unwrap()
            })
            .collect();
        let efficiency = s["median_efficiency"].as_f64().unwrap();
        assert!(
            (efficiency - (per_run[0] + per_run[1]) / 2.0).abs() <= efficiency * 1e-9,
            "{name}: {efficiency} from {per_run:?}"
        );
    }
    assert!(["rate", "efficiency"].contains(&report["ranked_by"].as_str().unwrap()));
    // The prefork master's workers are reported one by one.
    let workers = &server(&report, "muse/prefork-reactor")["runs"][0]["server"]["workers"];
    assert!(
        !workers.as_array().unwrap().is_empty(),
        "worker shares: {workers}"
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("<svg"), "an SVG document");
    assert!(svg.contains("muse/reactor"));
}

#[test]
fn spawn_and_against_drive_other_servers() {
    let dir = Scratch::new("peers");
    let json_path = dir.path("r.json");
    let against = tiny_server(|_, _| {});
    let spawn = format!(
        "peer={} serve echo --arch serial --listen 127.0.0.1:0",
        muse()
    );
    let against_arg = format!("tiny={against}");
    let mut args = vec![
        "echo",
        "--arch",
        "none",
        "--spawn",
        &spawn,
        "--against",
        &against_arg,
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--clients", "1", "--json", &json_path]);
    bench(&args);
    let report = json(&json_path);
    for name in ["peer", "tiny"] {
        let s = server(&report, name);
        assert_eq!(s["family"], "baseline");
        let load = &s["runs"][0]["load"];
        assert!(
            load["requests"].as_u64().unwrap() > 0,
            "{name} answered: {load}"
        );
        assert_eq!(load["errors"]["mismatch"], 0);
    }
    // muse started `peer`, so it sampled it; it cannot see `tiny`.
    assert!(server(&report, "peer")["runs"][0]["server"].is_object());
    assert!(server(&report, "tiny")["runs"][0]["server"].is_null());
}

#[test]
fn corrupting_and_silent_servers_are_reported_with_errors() {
    let dir = Scratch::new("bad");
    let json_path = dir.path("r.json");
    // Flips a byte in every third answer.
    let corrupt = tiny_server(|buf, n| {
        if n % 3 == 0 {
            buf[0] ^= 0xff;
        }
    });
    // Accepts and reads, but never answers.
    let silent = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        addr
    };
    let (a, b) = (format!("corrupt={corrupt}"), format!("silent={silent}"));
    let mut args = vec![
        "echo",
        "--arch",
        "reactor",
        "--against",
        &a,
        "--against",
        &b,
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--clients", "4", "--json", &json_path]);
    let out = bench(&args);
    let table = String::from_utf8_lossy(&out.stdout);
    let report = json(&json_path);
    let corrupt = &server(&report, "corrupt")["runs"][0]["load"]["errors"];
    assert!(
        corrupt["mismatch"].as_u64().unwrap() > 0,
        "mismatches counted: {corrupt}"
    );
    let silent = &server(&report, "silent")["runs"][0]["load"]["errors"];
    assert!(
        silent["stalled"].as_u64().unwrap() > 0,
        "stalls counted: {silent}"
    );
    // Erroring servers rank after the clean one, and the table says errors.
    let names: Vec<&str> = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "muse/reactor", "ranking: {names:?}");
    assert!(table.contains("errors"), "the table marks errors:\n{table}");
}

#[test]
fn bad_arguments_exit_2() {
    // Something to measure (a server that would refuse the connection),
    // so that only the flag added to it is wrong.
    let measurable = |flags: &[&'static str]| {
        [
            &[
                "bench",
                "echo",
                "--against",
                "x=127.0.0.1:9",
                "--arch",
                "none",
            ][..],
            flags,
        ]
        .concat()
    };
    for args in [
        vec!["bench", "echo", "--scenario", "nonsense"],
        vec!["bench", "echo", "--arch", "nonsense", "--duration", "0.1"],
        vec![
            "bench",
            "echo",
            "--against",
            "x=10.1.2.3:7",
            "--arch",
            "none",
        ],
        vec!["bench", "echo", "--repeat", "0"],
        measurable(&["--duration", "0"]),
        measurable(&["--json", "/nonexistent-muse-dir/r.json"]),
        measurable(&["--svg", "/"]),
    ] {
        let out = Command::new(muse()).args(&args).output().unwrap();
        assert!(
            out.status.code() == Some(2),
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?} explains itself");
    }
}

#[test]
fn a_run_that_fails_makes_the_exit_status_1_and_the_others_are_still_reported() {
    let spawn = format!(
        "peer={} serve echo --arch serial --listen 127.0.0.1:0",
        muse()
    );
    let mut args = vec![
        "bench",
        "echo",
        "--arch",
        "none",
        "--spawn",
        "broken=false",
        "--spawn",
        &spawn,
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--clients", "1"]);
    let out = Command::new(muse()).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("broken:"), "the failure is named: {stderr}");
    assert!(stderr.contains("1 of 2 runs failed"), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("peer ")),
        "the server that ran is in the table: {stdout}"
    );
    // Nothing at an --against address is a failed run too, not a row of
    // connection errors.
    let mut args = vec![
        "bench",
        "echo",
        "--arch",
        "none",
        "--against",
        "nobody=127.0.0.1:9",
    ];
    args.extend_from_slice(SHORT);
    let out = Command::new(muse()).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no connection to 127.0.0.1:9 succeeded"),
        "{stderr}"
    );
}

/// The state letter of `pid` in /proc (`None`: gone).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// The pids whose parent is `ppid`.
fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn ctrl_c_stops_and_reaps_every_server() {
    use std::os::unix::process::CommandExt;
    let mut bench = Command::new(muse())
        .args([
            "bench",
            "echo",
            "--arch",
            "prefork-reactor",
            "--duration",
            "30",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = bench.id() as i32;
    // Wait for the server (a master with workers) to be up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (master, workers) = loop {
        let servers = children_of(pid);
        if let Some(&m) = servers.first() {
            let w = children_of(m);
            if w.len() >= 2 {
                break (m, w);
            }
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kill takes plain integers; the group is the bench's own.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = bench.wait();
            panic!("no server with workers appeared under the bench");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Let the load run get under way, so the interrupt lands mid-run.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: as above; SIGINT is what Ctrl-C sends.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = bench.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted bench exits 130");
    // The master stopped gracefully (reaping its workers) and the bench
    // reaped the master: nothing is left, not even a zombie.
    assert_eq!(
        proc_state(master),
        None,
        "master {master} stopped and reaped"
    );
    for w in workers {
        assert_eq!(proc_state(w), None, "worker {w} stopped and reaped");
    }
}

#[test]
fn ftp_sessions_run_clean_against_muse_and_a_spawned_server() {
    let dir = Scratch::new("ftp");
    let json_path = dir.path("r.json");
    // A spawned server finds the fixture through `{root}` and through
    // $MUSE_BENCH_ROOT.
    let by_arg = format!(
        "by-arg={} serve ftp --arch reactor --listen 127.0.0.1:0 --root {{root}}",
        muse()
    );
    let by_env = format!(
        "by-env=sh -c 'exec {} serve ftp --arch thread-pool --listen 127.0.0.1:0 --root \"$MUSE_BENCH_ROOT\"'",
        muse()
    );
    let child = Command::new(muse())
        .args([
            "bench",
            "ftp",
            "--scenario",
            "sessions",
            "--arch",
            "reactor,thread-pool",
            "--spawn",
            &by_arg,
            "--spawn",
            &by_env,
            "--clients",
            "4",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--json",
            &json_path,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run muse bench");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "muse bench ftp failed: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&json_path);
    assert_eq!(report["protocol"], "ftp");
    assert_eq!(report["scenario"], "sessions");
    for name in ["muse/reactor", "muse/thread-pool", "by-arg", "by-env"] {
        let s = server(&report, name);
        for run in s["runs"].as_array().unwrap() {
            let load = &run["load"];
            assert!(load["requests"].as_u64().unwrap() > 0, "{name}: {load}");
            assert!(load["bytes"].as_u64().unwrap() > 0, "{name}: {load}");
            for kind in ["connect", "mismatch", "closed", "io", "stalled"] {
                assert_eq!(load["errors"][kind], 0, "{name}: {load}");
            }
        }
    }
    // The fixture directory is gone.
    let prefix = format!("muse-bench-root-{pid}-");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "fixture left behind: {left:?}");
}

/// A static file server for the HTTP tests: Python's `http.server`
/// serving ROOT with the given protocol version (HTTP/1.0 closes after
/// every response, HTTP/1.1 keeps the connection), printing the line the
/// bench waits for. `None` when there is no python3.
fn python_http_server(dir: &Scratch) -> Option<String> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("no python3: skipping");
        return None;
    }
    let path = dir.path("serve.py");
    std::fs::write(
        &path,
        r#"import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = sys.argv[2]
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"#,
    )
    .unwrap();
    Some(path)
}

#[test]
fn http_scenarios_run_clean_against_a_static_server() {
    let dir = Scratch::new("http");
    let Some(script) = python_http_server(&dir) else {
        return;
    };
    let json_path = dir.path("r.json");
    let (py11, py10) = (
        format!("py11=python3 {script} {{root}} HTTP/1.1"),
        format!("py10=python3 {script} {{root}} HTTP/1.0"),
    );
    for scenario in ["get", "close", "pipeline"] {
        let mut args = vec![
            "http",
            "--arch",
            "none",
            "--spawn",
            &py11,
            "--spawn",
            &py10,
            "--scenario",
            scenario,
        ];
        args.extend_from_slice(SHORT);
        args.extend_from_slice(&["--clients", "2", "--json", &json_path]);
        bench(&args);
        let report = json(&json_path);
        assert_eq!(report["protocol"], "http");
        for name in ["py11", "py10"] {
            let load = &server(&report, name)["runs"][0]["load"];
            assert!(
                load["requests"].as_u64().unwrap() > 0,
                "{scenario} {name}: {load}"
            );
            // Bodies only: whole 1 KiB files.
            assert_eq!(
                load["bytes"].as_u64().unwrap() % 1024,
                0,
                "{scenario} {name}: {load}"
            );
            for kind in ["connect", "mismatch", "closed", "io", "stalled"] {
                assert_eq!(load["errors"][kind], 0, "{scenario} {name}: {load}");
            }
        }
    }
}

#[test]
fn http_wrong_answers_are_mismatches() {
    // Answers every read with a 404.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let reply = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = Scratch::new("http-bad");
    let json_path = dir.path("r.json");
    let against = format!("nope={addr}");
    let mut args = vec!["http", "--arch", "none", "--against", &against];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--clients", "3", "--json", &json_path]);
    bench(&args);
    let report = json(&json_path);
    let load = &server(&report, "nope")["runs"][0]["load"];
    assert_eq!(load["requests"], 0, "{load}");
    assert_eq!(load["errors"]["mismatch"], 3, "{load}");
}

#[test]
fn http_with_an_architecture_is_accepted_and_never_hangs() {
    // Whether or not this muse serves http yet, the bench ends, and a
    // server that cannot start is a note that says why.
    let dir = Scratch::new("http-arch");
    let json_path = dir.path("r.json");
    let mut args = vec!["http", "--arch", "reactor", "--clients", "2"];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--json", &json_path]);
    bench(&args);
    let report = json(&json_path);
    let servers = report["servers"].as_array().unwrap();
    if servers.is_empty() {
        let notes = report["notes"].to_string();
        assert!(notes.contains("muse/reactor"), "{notes}");
        assert!(notes.contains("listening on"), "{notes}");
    } else {
        let load = &servers[0]["runs"][0]["load"];
        assert!(load["requests"].as_u64().unwrap() > 0, "{load}");
    }
}

#[test]
fn an_architecture_entry_may_carry_serve_arguments_of_its_own() {
    let dir = Scratch::new("accept");
    let json_path = dir.path("r.json");
    let mut args = vec![
        "echo",
        "--arch",
        "prefork-reactor,prefork-reactor --accept handoff",
        "--serve-arg=--workers=2",
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--json", &json_path]);
    bench(&args);
    let report = json(&json_path);
    assert_eq!(report["servers"].as_array().unwrap().len(), 2);
    for name in [
        "muse/prefork-reactor",
        "muse/prefork-reactor --accept handoff",
    ] {
        let run = &server(&report, name)["runs"][0];
        assert!(
            run["load"]["requests"].as_u64().unwrap() > 0,
            "{name} answered"
        );
        assert_eq!(run["load"]["errors"]["mismatch"], 0);
        // Two workers, as every entry was told.
        assert_eq!(
            run["server"]["workers"].as_array().unwrap().len(),
            2,
            "{name}"
        );
    }
}

/// The run's load errors, asserted zero kind by kind (`tls` included).
fn assert_no_errors(load: &serde_json::Value, what: &str) {
    for kind in ["connect", "mismatch", "closed", "io", "stalled", "tls"] {
        assert_eq!(load["errors"][kind], 0, "{what}: {load}");
    }
}

#[test]
fn tls_scenarios_run_clean_against_muse_and_a_spawned_server() {
    let dir = Scratch::new("tls");
    let json_path = dir.path("r.json");
    // A spawned server given the run's certificate through the
    // placeholders: muse itself, serving TLS only.
    let spawned = |protocol: &str| {
        format!(
            "spawned={} serve {protocol} --tls-listen 127.0.0.1:0 --tls-cert {{tls_cert}} --tls-key {{tls_key}}{}",
            muse(),
            if protocol == "http" { " --root {root}" } else { "" }
        )
    };
    for (protocol, scenario) in [
        ("http", "https-get"),
        ("http", "handshake"),
        ("kv", "kv-tls"),
    ] {
        let spawn = spawned(protocol);
        let mut args = vec![
            protocol,
            "--arch",
            "reactor,thread-pool",
            "--spawn",
            &spawn,
            "--scenario",
            scenario,
            "--clients",
            "2",
        ];
        args.extend_from_slice(SHORT);
        args.extend_from_slice(&["--json", &json_path]);
        bench(&args);
        let report = json(&json_path);
        assert_eq!(report["scenario"], scenario);
        for name in ["muse/reactor", "muse/thread-pool", "spawned"] {
            let load = &server(&report, name)["runs"][0]["load"];
            let what = format!("{scenario} {name}");
            assert!(load["requests"].as_u64().unwrap() > 0, "{what}: {load}");
            assert_no_errors(load, &what);
        }
    }
}

#[test]
fn tls_against_a_plain_server_is_counted_tls_errors() {
    let dir = Scratch::new("tls-plain");
    let json_path = dir.path("r.json");
    // Echoes the ClientHello back: not a TLS answer.
    let addr = tiny_server(|_, _| {}).to_string();
    let against = format!("plain={addr}");
    let mut args = vec![
        "http",
        "--arch",
        "none",
        "--against",
        &against,
        "--scenario",
        "https-get",
        "--clients",
        "2",
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--json", &json_path]);
    let out = bench(&args);
    let report = json(&json_path);
    let load = &server(&report, "plain")["runs"][0]["load"];
    assert_eq!(load["requests"], 0, "{load}");
    assert!(load["errors"]["tls"].as_u64().unwrap() > 0, "{load}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls"));
}

#[test]
fn ftps_sessions_run_clean_against_muse_and_a_spawned_server() {
    let dir = Scratch::new("ftps");
    let json_path = dir.path("r.json");
    // Explicit FTPS: a plain listener that switches on AUTH TLS, given the
    // run's certificate through the placeholders.
    let spawn = format!(
        "spawned={} serve ftp --arch thread-pool --listen 127.0.0.1:0 --tls-cert {{tls_cert}} --tls-key {{tls_key}} --root {{root}}",
        muse()
    );
    let mut args = vec![
        "ftp",
        "--arch",
        "reactor",
        "--spawn",
        &spawn,
        "--scenario",
        "ftps-sessions",
        "--clients",
        "2",
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--json", &json_path]);
    bench(&args);
    let report = json(&json_path);
    assert_eq!(report["scenario"], "ftps-sessions");
    for name in ["muse/reactor", "spawned"] {
        let load = &server(&report, name)["runs"][0]["load"];
        assert!(load["requests"].as_u64().unwrap() > 0, "{name}: {load}");
        assert!(load["bytes"].as_u64().unwrap() > 0, "{name}: {load}");
        assert_no_errors(load, name);
    }
}

/// Against a loopback server the clients connect from several loopback
/// addresses (a connection per request would otherwise be capped by the
/// kernel's reuse of one address's ports), and each client's connections
/// all come from one address.
#[test]
fn clients_of_a_loopback_server_come_from_several_addresses() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peers: Arc<Mutex<Vec<std::net::IpAddr>>> = Arc::default();
    let seen = Arc::clone(&peers);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.lock().unwrap().push(stream.peer_addr().unwrap().ip());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let against = format!("tiny={addr}");
    let mut args = vec![
        "echo",
        "--arch",
        "none",
        "--scenario",
        "connect",
        "--against",
        &against,
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--clients", "4"]);
    bench(&args);
    let peers = peers.lock().unwrap();
    let addresses: BTreeSet<_> = peers.iter().collect();
    assert!(
        peers.len() > 8,
        "a connection per request: {} seen",
        peers.len()
    );
    // Four clients, four addresses, every one a loopback address.
    assert_eq!(addresses.len(), 4, "sources: {addresses:?}");
    assert!(addresses.iter().all(|ip| ip.is_loopback()), "{addresses:?}");
}
