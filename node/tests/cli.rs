//! The `avs-node` binary as an operator meets it: help text and refusals of bad input.

use std::process::{Command, Output};

fn avs_node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avs-node"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AVS_ADMIN_TOKEN")
        .output()
        .expect("run avs-node")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn top_level_help_lists_every_subcommand() {
    let out = avs_node(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for sub in ["run", "devnet", "keys", "genesis", "status", "completions"] {
        assert!(help.contains(&format!("  {sub} ")), "--help does not list {sub}:\n{help}");
    }
    assert!(help.contains("--log-format"), "{help}");
}

#[test]
fn run_help_is_grouped_and_shows_defaults() {
    let out = avs_node(&["run", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for heading in ["Node:", "P2P network:", "HTTP API:", "gRPC:", "Roles:", "Logging:"] {
        assert!(help.contains(heading), "missing heading {heading}:\n{help}");
    }
    for shown in
        ["[default: 9000]", "[default: 127.0.0.1]", "[default: 5400000]", "--is-aggregator"]
    {
        assert!(help.contains(shown), "missing {shown}:\n{help}");
    }
}

#[test]
fn subcommand_helps_describe_their_flags() {
    for (args, must) in [
        (&["devnet", "--help"][..], &["--nodes", "--slot-ms", "--aggregators", "--data-dir"][..]),
        (&["keys", "generate", "--help"][..], &["--out", "--password-file"][..]),
        (&["keys", "import", "--help"][..], &["--bls-keystore", "--eth-keystore"][..]),
        (&["run", "--help"][..], &["--keys-password-file", "<data-dir>/keys"][..]),
        (&["genesis", "--help"][..], &["--operator", "--genesis-time", "--slot-ms", "--out"][..]),
    ] {
        let out = avs_node(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let help = stdout(&out);
        for flag in must {
            assert!(help.contains(flag), "{args:?} help lacks {flag}:\n{help}");
        }
    }
}

#[test]
fn bad_input_is_refused_with_a_reason_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let out = avs_node(&["run", "--data-dir", data_arg, "--sync-interval", "5"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("minimum"), "{}", stderr(&out));

    let missing = dir.path().join("missing.toml");
    let out = avs_node(&["run", "--data-dir", data_arg, "--config", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read config file"), "{}", stderr(&out));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[roles]\nis_agregator = true\n").unwrap();
    let out = avs_node(&["run", "--data-dir", data_arg, "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is_agregator"), "{}", stderr(&out));

    let out = avs_node(&["run", "--data-dir", data_arg, "--p2p-port", "not-a-port"]);
    assert!(!out.status.success());

    assert!(!data.exists(), "a refused configuration must not touch the data directory");
}

#[test]
fn keys_are_encrypted_unless_asked_otherwise_and_listed_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().unwrap();

    // No terminal and no password file: refused, nothing written.
    let out = avs_node(&["keys", "generate", "--out", keys_arg]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--password-file"), "{}", stderr(&out));
    assert!(!keys.exists(), "a refused generate created {}", keys.display());

    let password = dir.path().join("password");
    std::fs::write(&password, "a long operator password\n").unwrap();
    let out = avs_node(&[
        "keys",
        "generate",
        "--out",
        keys_arg,
        "--password-file",
        password.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let public: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(keys.join("bls.keystore.json").exists() && keys.join("eth.keystore.json").exists());
    assert!(!keys.join("bls.seed").exists() && !keys.join("eth.key").exists());

    let out = avs_node(&["keys", "list", "--keys-dir", keys_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(listed.contains("encrypted"), "{listed}");
    assert!(listed.contains(public["address"].as_str().unwrap()), "{listed}");
    let out = avs_node(&["keys", "list", "--json", "--keys-dir", keys_arg]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["bls_pubkey"], public["bls_pubkey"]);

    // A node on these keys without the password: refused, naming run's own flag.
    let genesis = dir.path().join("genesis.json");
    let operator = format!("{keys_arg}:100");
    let out = avs_node(&["genesis", "--operator", &operator, "--out", genesis.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = dir.path().join("data");
    let out = avs_node(&[
        "run",
        "--data-dir",
        data.to_str().unwrap(),
        "--keys-dir",
        keys_arg,
        "--genesis",
        genesis.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--keys-password-file"), "{}", stderr(&out));
    assert!(!data.exists(), "a node that cannot open its keys created {}", data.display());
}

#[test]
fn completions_are_printed_for_the_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = avs_node(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("avs-node"), "{shell}");
        assert!(stdout(&out).contains("is-aggregator"), "{shell}");
    }
}

#[test]
fn status_names_the_node_it_cannot_reach() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = avs_node(&["status", "--url", &format!("http://127.0.0.1:{port}")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is the node running"), "{}", stderr(&out));
}

#[test]
fn genesis_refuses_a_slot_under_100_ms() {
    let out = avs_node(&["genesis", "--slot-ms", "50", "--operator", "x:1", "--out", "g.json"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("100"), "{}", stderr(&out));
}
