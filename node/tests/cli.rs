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
    for sub in ["run", "devnet", "keys", "genesis"] {
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
        (&["keys", "generate", "--help"][..], &["--out"][..]),
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
