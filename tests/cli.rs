//! The `tickwatch` binary as an operator types it: migrations and user management on a
//! fresh SQLite file, and a clear error for a bad command line. (A test of the root
//! package, not of the `tickwatch-tests` crate around it: it needs the built binary.)

use std::path::PathBuf;
use std::process::{Command, Output};

struct Cli {
    dir: PathBuf,
    prefix: String,
}

impl Cli {
    fn new() -> Cli {
        let id = format!("{:016x}", rand_id());
        let dir = std::env::temp_dir().join(format!("tickwatch-cli-{id}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Cli {
            dir,
            prefix: format!("twt-cli-{}", &id[..8]),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tickwatch"))
            .args(args)
            .current_dir(&self.dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", self.dir.join("cli.db").display()),
            )
            // Its own names on the broker: the rule-change announcements go nowhere shared.
            .env("TICKWATCH_BROKER__PREFIX", &self.prefix)
            .env_remove("TICKWATCH_CONFIG")
            .env("RUST_LOG", "error")
            .output()
            .expect("tickwatch runs")
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tickwatch {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

#[test]
fn migrate_then_manage_users_and_keys_from_the_command_line() {
    let cli = Cli::new();
    // Everything but `run` refuses an unmigrated database, and says how to fix it.
    let refused = cli.run(&["user", "list"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("migrate"), "points at the fix: {stderr}");

    assert!(cli.ok(&["migrate", "up"]).contains("migrations applied"));
    let status = cli.ok(&["migrate", "status"]);
    assert!(status.contains("m20261121_000001_initial"), "{status}");

    let added = cli.ok(&["user", "add", "alice", "--telegram-chat", "4242", "--admin"]);
    assert!(
        added.contains("created: alice (admin)"),
        "user add says what it made: {added}"
    );
    let key = cli.ok(&["apikey", "create", "alice"]);
    let lines: Vec<&str> = key.lines().collect();
    assert!(lines[0].contains("shown once"), "{key}");
    assert!(
        lines.get(1).is_some_and(|k| k.len() >= 32),
        "the key itself: {key}"
    );
    // The key is printed once: the list shows the user, never a key.
    let list = cli.ok(&["user", "list"]);
    assert!(list.contains("alice") && list.contains("4242") && list.contains("admin"));
    assert!(!list.contains(lines[1]));

    assert!(
        cli.ok(&["user", "remove", "--demo"])
            .contains("no demo user to remove")
    );
    let removed = cli.ok(&["user", "remove", "alice"]);
    assert!(
        removed.contains("removed user") && removed.contains("1 API key(s)"),
        "{removed}"
    );
    assert!(!cli.ok(&["user", "list"]).contains("alice"));
}

#[test]
fn a_bad_command_line_says_what_is_wrong() {
    let cli = Cli::new();
    let out = cli.run(&["user", "add"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("<NAME>"),
        "names the missing argument: {stderr}"
    );
    let out = cli.run(&["produce", "nasdaq"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'nasdaq'") && stderr.contains("--help"),
        "names the bad source and where the list is: {stderr}"
    );
}

/// A role whose admin address is taken would run without `/readyz` — a pod that is never
/// ready: it refuses to start and names the address and the variable to change.
#[test]
fn a_role_refuses_to_start_when_its_admin_address_is_taken() {
    let cli = Cli::new();
    cli.ok(&["migrate", "up"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("address").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tickwatch"))
        .args(["consume", "recorder"])
        .current_dir(&cli.dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", cli.dir.join("cli.db").display()),
        )
        .env("TICKWATCH_BROKER__PREFIX", &cli.prefix)
        .env("TICKWATCH_ADMIN_ADDR", &addr)
        .env_remove("TICKWATCH_CONFIG")
        .output()
        .expect("tickwatch runs");
    assert!(!out.status.success(), "it must not run without /readyz");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("TICKWATCH_ADMIN_ADDR"),
        "names the address and the variable: {stderr}"
    );
}

#[test]
fn completions_and_the_manual_page_print_without_a_configuration() {
    // Before any configuration is read: a missing config file is no obstacle.
    let print = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tickwatch"))
            .args(args)
            .env("TICKWATCH_CONFIG", "/nonexistent/tickwatch.toml")
            .output()
            .expect("tickwatch runs");
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let bash = print(&["completions", "bash"]);
    assert!(bash.contains("_tickwatch()"), "{bash}");
    assert!(bash.contains("consume") && bash.contains("dlq"), "{bash}");
    let zsh = print(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef tickwatch"), "{zsh}");
    let fish = print(&["completions", "fish"]);
    assert!(fish.contains("complete -c tickwatch"), "{fish}");
    let man = print(&["man"]);
    assert!(man.contains(".TH tickwatch 1"), "{man}");
    assert!(man.contains("consume"), "{man}");
}

/// Serves one HTTP answer with `body` on a local port, as a venue's API would; its URL.
fn serve_once(body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/v1/market/all?isDetails=true",
        listener.local_addr().expect("addr")
    );
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn symbols_are_imported_from_a_venue_and_from_kis_master_files() {
    let cli = Cli::new();
    cli.ok(&["migrate", "up"]);
    let upbit = serve_once(
        r#"[{"market":"KRW-BTC","korean_name":"비트코인","english_name":"Bitcoin"},{"market":"KRW-DOGE","korean_name":"도지코인","english_name":"Dogecoin"}]"#,
    );
    let imported = cli.ok(&["symbols", "import", "upbit", &upbit]);
    assert!(imported.contains("upbit: 2 listed"), "{imported}");
    let found = cli.ok(&["symbols", "search", "도지"]);
    assert!(
        found.contains("KRW-DOGE") && found.contains("도지코인 (KRW)"),
        "{found}"
    );
    assert!(found.contains("ms from memory"), "says how long: {found}");

    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gateway/tests/fixtures");
    let kospi = fixtures.join("kospi_code.mst");
    let kosdaq = fixtures.join("kosdaq_code.mst");
    let krx = cli.ok(&[
        "symbols",
        "import",
        "krx",
        kospi.to_str().expect("path"),
        kosdaq.to_str().expect("path"),
    ]);
    assert!(krx.contains("krx: 5 listed"), "{krx}");
    let found = cli.ok(&["symbols", "search", "에코프로"]);
    assert!(found.contains("247540"), "{found}");

    // krx needs files, and says which.
    let refused = cli.run(&["symbols", "import", "krx"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("kospi_code.mst"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
