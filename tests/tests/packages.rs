//! The Debian packages `scripts/package` builds, installed the way dpkg installs them, into a
//! scratch root instead of this machine: `dpkg --root` with the maintainer scripts run outside
//! a chroot (`--force-script-chrootless`, which points them at the root through `DPKG_ROOT`).
//!
//! Ignored by a plain `cargo test` because it needs the packages (and the cross builds in
//! them); `scripts/test` builds them and runs it with `--ignored`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use trellis_tests::*;

/// The one `.deb` of `package` for `arch` that `scripts/package` made.
fn deb(package: &str, arch: &str) -> PathBuf {
    let dir = root().join("target/debian");
    let found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/package first", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{package}_")) && n.ends_with(&format!("_{arch}.deb"))
            })
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {package} package for {arch} in {}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch root with an empty dpkg database, as on a fresh system.
fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc", "run"] {
        fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    fs::write(root.path().join("var/lib/dpkg/status"), "").unwrap();
    root
}

fn install(root: &Path, deb: &Path) {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            // The scratch root has no libc or systemd package to satisfy Depends, and holds
            // an arm64 or armhf package on an amd64 machine.
            "--force-depends",
            "--force-architecture",
            "--log=/dev/null",
            "--install",
        ])
        .arg(deb));
    // What systemd-tmpfiles-setup.service does at boot (the package does it at once only on
    // a running systemd).
    run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create"));
}

/// uid and gid of `user`, and its home and shell, from the root's /etc/passwd.
fn user(root: &Path, user: &str) -> (u32, u32, String, String) {
    let passwd = fs::read_to_string(root.join("etc/passwd")).expect("etc/passwd");
    let fields: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == user)
        .unwrap_or_else(|| panic!("no user {user} in:\n{passwd}"));
    (
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
        fields[5].to_string(),
        fields[6].to_string(),
    )
}

fn group_members(root: &Path, group: &str) -> Vec<String> {
    let groups = fs::read_to_string(root.join("etc/group")).expect("etc/group");
    let line = groups
        .lines()
        .find(|l| l.starts_with(&format!("{group}:")))
        .unwrap_or_else(|| panic!("no group {group} in:\n{groups}"));
    let members = line.rsplit(':').next().unwrap_or_default();
    members
        .split(',')
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect()
}

/// Mode bits, owner and group of `path`.
fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

/// The package's maintainer script `script`.
fn control_script(deb: &Path, script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(dir.path()));
    fs::read_to_string(dir.path().join(script)).unwrap_or_default()
}

/// The installed configuration is the documented example, every setting and comment, with
/// the package's data directory in place of the example's `default`.
fn check_config(root: &Path, service: &str, default: &str, state: &str) {
    let installed = fs::read_to_string(root.join(format!("etc/trellis/{service}.toml")))
        .expect("installed configuration");
    let example =
        fs::read_to_string(trellis_tests::root().join(format!("{service}/{service}.example.toml")))
            .expect("example configuration");
    let from = format!("data_dir = \"{default}\"\n");
    assert!(example.contains(&from), "the example sets {from}");
    let expected = example.replace(
        &from,
        &format!("data_dir = \"{state}\"  # the package's; the default is \"{default}\"\n"),
    );
    assert_eq!(installed, expected, "/etc/trellis/{service}.toml");
}

/// What every package of a service must hold and do, checked on one installed root.
fn check_service(root: &Path, deb: &Path, service: &str, user_name: &str, state: &str) {
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let unit = ["lib", "usr/lib"]
        .iter()
        .map(|d| format!("{d}/systemd/system/{service}.service"))
        .find(|p| root.join(p).exists())
        .unwrap_or_else(|| {
            panic!("no {service}.service installed; the package holds:\n{contents}")
        });
    for path in [
        format!("usr/bin/{service}"),
        format!("etc/trellis/{service}.toml"),
        format!("usr/lib/sysusers.d/{service}.conf"),
        format!("usr/lib/tmpfiles.d/{service}.conf"),
    ] {
        assert!(root.join(&path).exists(), "/{path} installed:\n{contents}");
    }
    let conffiles = fs::read_to_string(root.join(format!("var/lib/dpkg/info/{service}.conffiles")))
        .unwrap_or_default();
    assert!(
        conffiles.contains(&format!("/etc/trellis/{service}.toml")),
        "the configuration is a conffile, kept across upgrades: {conffiles:?}"
    );

    // The user, from the package's sysusers.d file, run by its postinst.
    let (uid, gid, home, shell) = user(root, user_name);
    assert!(uid < 1000 && uid > 0, "{user_name} is a system user: {uid}");
    assert_eq!(home, state);
    assert!(
        shell.ends_with("nologin"),
        "nobody logs in as {user_name}: {shell}"
    );

    // Its directories, from the tmpfiles.d file.
    assert_eq!(
        owner_mode(&root.join(&state[1..])),
        (0o750, uid, gid),
        "{state}"
    );
    assert_eq!(
        owner_mode(&root.join(format!("etc/trellis/{service}.toml"))),
        (0o640, 0, gid),
        "the configuration is root's and readable by {user_name} only"
    );

    // Enabled (started at boot), not started by the install.
    let wants = root.join(format!(
        "etc/systemd/system/multi-user.target.wants/{service}.service"
    ));
    let target = fs::read_link(&wants).unwrap_or_else(|e| panic!("{}: {e}", wants.display()));
    assert_eq!(target, Path::new("/").join(&unit), "enabled");
    let postinst = control_script(deb, "postinst");
    assert!(postinst.contains("deb-systemd-helper enable"), "{postinst}");
    // An upgrade restarts a running service (try-restart); an install never starts one.
    let invokes: Vec<&str> = postinst
        .lines()
        .filter(|l| l.contains("deb-systemd-invoke"))
        .collect();
    assert!(
        invokes.iter().all(|l| l.contains("try-restart")),
        "the install never starts the service:\n{postinst}"
    );

    // The unit, as systemd would load it from this root, with the units of the systemd
    // package it depends on (this machine's) beside it.
    run(Command::new("cp")
        .args(["-a", "--no-clobber", "/usr/lib/systemd/system/."])
        .arg(root.join("usr/lib/systemd/system")));
    run(Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .args(["verify", "--man=no"])
        .arg(format!("{service}.service")));
}

#[test]
#[ignore = "needs the packages; scripts/test runs scripts/package and then this"]
fn the_station_package_installs_a_user_its_directories_and_an_enabled_idle_service() {
    for arch in ["arm64", "armhf"] {
        let deb = deb("edge-daemon", arch);
        let root = scratch_root();
        install(root.path(), &deb);
        check_service(
            root.path(),
            &deb,
            "edge-daemon",
            "trellis",
            "/var/lib/trellis",
        );
        check_config(
            root.path(),
            "edge-daemon",
            "trellis-data",
            "/var/lib/trellis",
        );
        assert!(
            group_members(root.path(), "dialout").contains(&"trellis".to_string()),
            "trellis may open serial ports"
        );
        let elf = run(Command::new("readelf")
            .arg("-h")
            .arg(root.path().join("usr/bin/edge-daemon")));
        let machine = if arch == "arm64" { "AArch64" } else { "ARM" };
        assert!(elf.contains(machine), "an {machine} binary:\n{elf}");
    }

    // The installed arm64 station starts on the packaged configuration: it names no links,
    // and the station serves with none.
    let root = scratch_root();
    install(root.path(), &deb("edge-daemon", "arm64"));
    let config = root.path().join("etc/trellis/edge-daemon.toml");
    let station = EdgeDaemon::start_exe(
        &StationExe::aarch64(root.path().join("usr/bin/edge-daemon")),
        tempfile::tempdir().unwrap(),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(station.get("/api/v1/links")["links"], serde_json::json!([]));
}

#[test]
#[ignore = "needs the packages; scripts/test runs scripts/package and then this"]
fn the_relay_package_installs_a_user_its_directories_and_an_enabled_idle_service() {
    let deb = deb("cloud-relay", "amd64");
    let root = scratch_root();
    install(root.path(), &deb);
    check_service(
        root.path(),
        &deb,
        "cloud-relay",
        "trellis-relay",
        "/var/lib/trellis-relay",
    );

    check_config(
        root.path(),
        "cloud-relay",
        "relay-data",
        "/var/lib/trellis-relay",
    );
    // The packaged configuration is one the relay reads.
    let data = tempfile::tempdir().unwrap();
    let status = run(Command::new(root.path().join("usr/bin/cloud-relay"))
        .arg("--config")
        .arg(root.path().join("etc/trellis/cloud-relay.toml"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status --json");
    assert_eq!(status["orgs"], serde_json::json!([]));
}
