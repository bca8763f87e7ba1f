//! The Dockerfile: hadolint, and its stages against the workspace (binaries, toolchain, user).

use std::collections::BTreeSet;
use std::process::Command;

use shortener_deploy_checks::dockerfile::Dockerfile;
use shortener_deploy_checks::{repo, tools, workspace};

/// The images of the stack: the operator and the three workloads it deploys.
const IMAGES: [&str; 4] = ["url-api", "analytics-rpc", "consumer", "operator"];

fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&repo::read("Dockerfile").unwrap()).unwrap()
}

#[test]
fn hadolint_passes() {
    let hadolint = tools::from_env("HADOLINT_BIN").unwrap_or_else(|e| panic!("{e}"));
    let out = tools::run(
        Command::new(hadolint)
            .arg("--no-color")
            .arg(repo::path("Dockerfile"))
            .current_dir(repo::root()),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_image_is_a_target_that_ships_one_workspace_binary() {
    let df = dockerfile();
    let bins = workspace::binaries().unwrap();
    for image in IMAGES {
        assert!(
            bins.contains_key(image),
            "no workspace binary {image}: {bins:?}"
        );
        let stage = df
            .stage(image)
            .unwrap_or_else(|| panic!("no target {image}"));
        assert_eq!(
            stage.base, "runtime",
            "{image} must build on the shared runtime stage"
        );
        let copies: Vec<&str> = stage.args_of("COPY").collect();
        assert_eq!(
            copies,
            [format!("--from=build /out/{image} /usr/local/bin/{image}").as_str()],
            "{image} copies exactly its binary"
        );
        assert_eq!(
            stage.last("ENTRYPOINT"),
            Some(format!("[\"/usr/local/bin/{image}\"]").as_str())
        );
    }
    // Every final stage is one of the images; nothing else is a leaf besides the build chain.
    let targets: BTreeSet<&str> = df
        .stages
        .iter()
        .filter(|s| s.base == "runtime")
        .filter_map(|s| s.name.as_deref())
        .collect();
    assert_eq!(targets, IMAGES.into_iter().collect());
}

#[test]
fn build_stage_compiles_exactly_the_image_binaries_locked() {
    let df = dockerfile();
    let build = df.stage("build").expect("build stage");
    let runs: Vec<&str> = build.args_of("RUN").collect();
    let bin_flags = |cmd: &str| -> BTreeSet<String> {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "--bin")
            .map(|w| w[1].to_string())
            .collect()
    };
    let want: BTreeSet<String> = IMAGES.iter().map(|s| s.to_string()).collect();
    let cook = runs
        .iter()
        .find(|r| r.contains("cargo chef cook"))
        .expect("chef cook");
    let cargo_build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("cargo build");
    for cmd in [cook, cargo_build] {
        assert!(
            cmd.contains("--release") && cmd.contains("--locked"),
            "{cmd}"
        );
        assert_eq!(bin_flags(cmd), want, "{cmd}");
    }
    // The dependency layer is cooked from the recipe before the sources are copied.
    let pos = |pred: &dyn Fn(&str) -> bool| {
        build
            .instructions
            .iter()
            .position(|i| pred(&format!("{} {}", i.keyword, i.args)))
            .unwrap()
    };
    assert!(pos(&|i| i.contains("cargo chef cook")) < pos(&|i| i == "COPY . ."));
    assert_eq!(df.stage("planner").unwrap().base, "chef");
    assert_eq!(build.base, "chef");
}

#[test]
fn builder_matches_the_pinned_toolchain_and_runtime_is_distroless_nonroot() {
    let df = dockerfile();
    let channel = workspace::toolchain_channel().unwrap();
    assert_eq!(df.global_arg("RUST_VERSION"), Some(channel.as_str()));
    let chef = df.stage("chef").unwrap();
    assert_eq!(df.resolve(&chef.base), format!("rust:{channel}-bookworm"));

    let runtime = df.stage("runtime").unwrap();
    let base = df.resolve(&runtime.base);
    // Debian 12 (bookworm) on both sides: the binaries link the builder's glibc and libssl3.
    assert_eq!(base, "gcr.io/distroless/cc-debian12:nonroot");
    assert_eq!(runtime.last("USER"), Some("65532:65532"));
    for image in IMAGES {
        // No final stage switches back to another user.
        assert_eq!(df.stage(image).unwrap().last("USER"), None, "{image}");
    }
}

#[test]
fn dockerignore_keeps_build_output_and_caches_out_but_not_the_sources() {
    let ignore = repo::read(".dockerignore").unwrap();
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for p in ["target/", ".cache/", ".dev/", ".git/"] {
        assert!(patterns.contains(p), "{p} missing from .dockerignore");
    }
    // What the build needs: manifests, sources, migrations (sqlx::migrate!), protos (build.rs).
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "crates",
        "services",
        "operator",
        "migrations",
        "proto",
        "rust-toolchain.toml",
    ] {
        assert!(
            !patterns.iter().any(|p| p.trim_end_matches('/') == needed),
            "{needed} must stay in the build context"
        );
        assert!(repo::path(needed).exists(), "{needed} exists");
    }
}
