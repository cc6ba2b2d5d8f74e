//! The container image. `tests/container/build-image.sh` builds an OCI image FROM scratch with
//! buildah from the binary under test (the same script builds a release image from
//! `target/release/dvsigner`); the Dockerfile's runtime stage is built with buildah from the same
//! root filesystem. Both are inspected (podman, skopeo on the OCI archive, the exported file
//! list), then podman runs the script's image: `--version`, `signer --check-config` with a config
//! mounted read-only, and a signer with a read-only root filesystem on a published loopback port
//! that answers `/upcheck`, lists and signs with the mounted dev keystores, and stops cleanly on
//! SIGTERM. Containers and images carry unique names and are removed on every exit path.
//!
//! Needs buildah, podman, runc, skopeo (`.ci/run` installs them). podman runs with
//! `--runtime runc` (`DVSIGNER_TEST_OCI_RUNTIME` to change) and explicit `--ulimit`s. If podman
//! cannot run a container at all here, the test says so on stderr (not captured) and passes
//! after building and inspecting the images, unless `DVSIGNER_REQUIRE_CONTAINER_RUN` is set
//! (CI sets it), in which case it fails.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{bin, free_port, http_client};
use dvsigner::keys::interop::interop_secret_key;
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` (stdin closed) and returns its output.
fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, asserts it succeeded, returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(args);
    c
}

/// `podman run` with the options this machine needs: the runc runtime and explicit limits.
fn podman_run(args: &[&str]) -> Command {
    let runtime = std::env::var("DVSIGNER_TEST_OCI_RUNTIME").unwrap_or_else(|_| "runc".into());
    let mut c = podman(&["run", "--runtime", &runtime]);
    c.args([
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
    ]);
    c.args(args);
    c
}

fn require_tool(name: &str) {
    let found = Command::new(name)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is required for the container image test \
         (apt-get install buildah podman runc skopeo; .ci/run does)"
    );
}

/// Writes to the real stderr, which the test harness does not capture even when the test
/// passes.
fn shout(message: &str) {
    let bar = "!".repeat(78);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n{message}\n{bar}\n");
}

/// Removes the test's containers (with their anonymous volumes) and images, on drop too.
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    /// Removes everything; returns what could not be removed.
    fn run(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        for name in self.containers.drain(..) {
            let exists = output(&mut podman(&["container", "exists", &name]));
            if exists.status.success() {
                let out = output(&mut podman(&[
                    "rm",
                    "--force",
                    "--volumes",
                    "--time",
                    "0",
                    &name,
                ]));
                if !out.status.success() {
                    failed.push(format!("container {name}: {}", text(&out)));
                }
            }
        }
        for image in self.images.drain(..) {
            let exists = output(&mut podman(&["image", "exists", &image]));
            if exists.status.success() {
                let out = output(&mut podman(&["rmi", "--force", &image]));
                if !out.status.success() {
                    failed.push(format!("image {image}: {}", text(&out)));
                }
            }
        }
        failed
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for problem in self.run() {
            shout(&format!("container test cleanup failed: {problem}"));
        }
    }
}

/// The shared libraries and loader of `binary` as `ldd` resolves them (paths without the
/// leading `/`).
fn ldd_libraries(binary: &Path) -> BTreeSet<String> {
    let out = ok(Command::new("ldd").arg(binary));
    let mut libs = BTreeSet::new();
    for line in out.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.insert(p.trim_start_matches('/').to_owned());
        }
    }
    libs
}

/// One entry of an exported container file system: mode string, `uid/gid`, size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: String,
    owner: String,
    size: u64,
}

/// The file system of `image` (created as container `name`, exported, listed with `tar`), and
/// the text of its `/etc/passwd`.
fn image_files(image: &str, name: &str, dir: &Path) -> (BTreeMap<String, Entry>, String) {
    ok(&mut podman(&["create", "--name", name, image]));
    let tar = dir.join(format!("{name}.tar"));
    ok(&mut podman(&[
        "export",
        "--output",
        &tar.display().to_string(),
        name,
    ]));
    ok(&mut podman(&["rm", "--volumes", name]));
    let listing = ok(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvf")
        .arg(&tar));
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() >= 6, "unexpected tar line {line:?}");
        let path = f[5..].join(" ");
        let path = path.split(" -> ").next().unwrap_or_default();
        files.insert(
            path.trim_end_matches('/').to_owned(),
            Entry {
                mode: f[0].to_owned(),
                owner: f[1].to_owned(),
                size: f[2].parse().unwrap_or_else(|_| panic!("size in {line:?}")),
            },
        );
    }
    let passwd = ok(Command::new("tar").arg("-xOf").arg(&tar).arg("etc/passwd"));
    std::fs::remove_file(&tar).expect("remove export");
    (files, passwd)
}

/// `podman image inspect IMAGE`, the one object.
fn inspect(image: &str) -> Value {
    let out = ok(&mut podman(&["image", "inspect", image]));
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// The checks both images must pass: configuration and file system.
fn check_image(image: &str, what: &str, files: &BTreeMap<String, Entry>, passwd: &str) -> Value {
    let info = inspect(image);
    let config = &info["Config"];
    assert_eq!(info["Os"], "linux", "{what}: {info:#}");
    let user = config["User"].as_str().unwrap_or_default();
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    assert_eq!(
        (uid, gid),
        ("10001", "10001"),
        "{what}: non-root numeric user"
    );
    let chart: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo().join("helm/dvsigner/values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml YAML");
    assert_eq!(
        chart["podSecurityContext"]["runAsUser"]
            .as_u64()
            .map(|u| u.to_string()),
        Some(uid.to_owned()),
        "{what}: the chart runs as the image's user"
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/dvsigner"]),
        "{what}"
    );
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "PATH=/usr/local/bin")),
        "{what}: PATH must find dvsigner: {config:#}"
    );
    let ports: BTreeSet<&str> = config["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        ports,
        BTreeSet::from(["9000/tcp", "9001/tcp", "9100/tcp"]),
        "{what}"
    );
    assert!(
        config["Volumes"].get("/var/lib/dvsigner").is_some(),
        "{what}: data volume: {config:#}"
    );
    let labels = &config["Labels"];
    let label = |k: &str| labels[format!("org.opencontainers.image.{k}")].clone();
    assert_eq!(label("version"), VERSION, "{what}: {labels:#}");
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"), "{what}");
    assert_eq!(label("title"), "dvsigner", "{what}");
    assert_eq!(
        label("description"),
        env!("CARGO_PKG_DESCRIPTION"),
        "{what}"
    );
    for k in ["source", "revision", "created"] {
        assert!(
            label(k).as_str().is_some_and(|s| !s.is_empty()),
            "{what}: label {k}: {labels:#}"
        );
    }

    // Exactly: the binary, its libraries and loader, three files in /etc; no shell.
    let regular: BTreeSet<String> = files
        .iter()
        .filter(|(_, e)| !e.mode.starts_with('d'))
        .map(|(p, _)| p.clone())
        .collect();
    let mut expected: BTreeSet<String> = ldd_libraries(&bin());
    assert!(!expected.is_empty(), "ldd found no libraries");
    for f in [
        "usr/local/bin/dvsigner",
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
    ] {
        expected.insert(f.to_owned());
    }
    assert_eq!(regular, expected, "{what}: files of the image");
    for f in &regular {
        assert!(
            files[f].mode.starts_with('-'),
            "{what}: {f} is not a regular file (links are not expected): {:?}",
            files[f]
        );
        assert_eq!(files[f].owner, "0/0", "{what}: {f} must be root's");
    }
    let binary = &files["usr/local/bin/dvsigner"];
    assert_eq!(
        binary.size,
        std::fs::metadata(bin()).expect("binary").len(),
        "{what}"
    );
    assert_eq!(binary.mode, "-rwxr-xr-x", "{what}");
    let data = &files["var/lib/dvsigner"];
    assert_eq!(
        (data.mode.as_str(), data.owner.as_str()),
        ("drwx------", "10001/10001"),
        "{what}: data directory"
    );
    assert_eq!(files["tmp"].mode, "drwxrwxrwt", "{what}");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("dvsigner:x:10001:10001:")),
        "{what}: /etc/passwd: {passwd}"
    );
    info
}

/// Builds the Dockerfile's runtime stage (everything from its `FROM scratch`) with buildah,
/// its build stage replaced by one holding the root filesystem `rootfs.sh` lays out for the
/// binary under test, as the real build stage does for the release binary.
fn build_dockerfile_runtime_stage(image: &str, dir: &Path) {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let runtime = dockerfile
        .find("\nFROM scratch")
        .map(|i| &dockerfile[i + 1..])
        .expect("Dockerfile has a `FROM scratch` runtime stage");
    assert!(
        dockerfile.contains("tests/container/rootfs.sh target/release/dvsigner /rootfs")
            && dockerfile.contains("mv /rootfs/var/lib/dvsigner /data/"),
        "the Dockerfile's build stage lays out /rootfs and /data with rootfs.sh"
    );
    let ctx = dir.join("dockerfile-context");
    std::fs::create_dir(&ctx).expect("context");
    ok(Command::new(repo().join("tests/container/rootfs.sh"))
        .arg(bin())
        .arg(ctx.join("rootfs")));
    std::fs::create_dir(ctx.join("data")).expect("data");
    std::fs::rename(
        ctx.join("rootfs/var/lib/dvsigner"),
        ctx.join("data/dvsigner"),
    )
    .expect("move data dir");
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM scratch AS build\nCOPY rootfs /rootfs\nCOPY data /data\n{runtime}"),
    )
    .expect("Containerfile");
    ok(Command::new("buildah")
        .args(["build", "--pull=never", "--layers=false", "--quiet", "-f"])
        .arg(ctx.join("Containerfile"))
        .args(["-t", image])
        .arg(&ctx));
    std::fs::remove_dir_all(&ctx).expect("remove context");
}

/// The id inside a user namespace of `host_id`, by the namespace's `/proc/PID/uid_map` (or
/// `gid_map`) lines `INSIDE OUTSIDE COUNT`; `u64::MAX` when it is not mapped.
fn in_namespace(host_id: u64, map: &str) -> u64 {
    map.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            match f[..] {
                [inside, outside, count] if (outside..outside + count).contains(&host_id) => {
                    Some(inside + (host_id - outside))
                }
                _ => None,
            }
        })
        .next()
        .unwrap_or(u64::MAX)
}

/// Whether a failed `podman run` failed before any process of the image started, for a reason
/// of this machine (OCI runtime or podman error, exit 125/126, not about our binary), as
/// opposed to a broken image (missing binary or library: 127, or the binary's own exit code).
fn cannot_run_containers_here(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    matches!(out.status.code(), Some(125 | 126)) && !stderr.contains("/usr/local/bin/dvsigner")
}

/// Waits (bounded) until `url` answers 200; panics with the container's log if the container
/// stops or the bound passes.
async fn wait_upcheck(url: &str, container: &str) {
    let client = http_client();
    let start = Instant::now();
    loop {
        if let Ok(r) = client
            .get(url)
            .timeout(Duration::from_millis(500))
            .send()
            .await
        {
            if r.status() == 200 {
                assert_eq!(r.text().await.expect("body"), "OK");
                return;
            }
        }
        let running = ok(&mut podman(&[
            "inspect",
            "--format",
            "{{.State.Running}}",
            container,
        ]));
        let logs = || text(&output(&mut podman(&["logs", container])));
        assert!(
            running.trim() == "true",
            "container {container} stopped:\n{}",
            logs()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{url} did not answer within 60 s:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn image_builds_inspects_and_runs_read_only() {
    for tool in ["buildah", "podman", "skopeo", "ldd", "tar"] {
        require_tool(tool);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let unique = format!("dvsigner-test-{}-{nanos}", std::process::id());
    let image = format!("localhost/{unique}/script:{VERSION}");
    let docker_image = format!("localhost/{unique}/dockerfile:{VERSION}");
    let container = |what: &str| format!("{unique}-{what}");
    let mut cleanup = Cleanup {
        containers: [
            "export",
            "export-dockerfile",
            "version",
            "path",
            "check",
            "bad",
            "signer",
        ]
        .iter()
        .map(|w| container(w))
        .collect(),
        images: vec![image.clone(), docker_image.clone()],
    };
    let dir = tempfile::tempdir().expect("tempdir");

    // Build with the script, as a release image would be built from target/release/dvsigner.
    let archive = dir.path().join("image.tar");
    let built = ok(Command::new(repo().join("tests/container/build-image.sh"))
        .arg(bin())
        .arg(&image)
        .arg(&archive));
    println!("{built}");

    let (files, passwd) = image_files(&image, &container("export"), dir.path());
    let info = check_image(&image, "script image", &files, &passwd);
    assert_eq!(
        info["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "one layer"
    );

    // The OCI archive holds the same image.
    let skopeo: Value = serde_json::from_str(&ok(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))))
    .expect("skopeo JSON");
    assert_eq!(skopeo["Labels"], info["Config"]["Labels"]);
    assert_eq!(skopeo["Os"], "linux");
    assert_eq!(skopeo["Architecture"], info["Architecture"]);
    assert_eq!(skopeo["Layers"].as_array().map(Vec::len), Some(1));

    // The Dockerfile's runtime stage gives the same configuration and files.
    build_dockerfile_runtime_stage(&docker_image, dir.path());
    let (docker_files, docker_passwd) =
        image_files(&docker_image, &container("export-dockerfile"), dir.path());
    let docker_info = check_image(
        &docker_image,
        "Dockerfile runtime stage",
        &docker_files,
        &docker_passwd,
    );
    for k in [
        "User",
        "Entrypoint",
        "Cmd",
        "Env",
        "ExposedPorts",
        "Volumes",
        "WorkingDir",
        "StopSignal",
    ] {
        assert_eq!(
            docker_info["Config"][k], info["Config"][k],
            "Dockerfile vs build-image.sh: {k}"
        );
    }
    let entries = |f: &BTreeMap<String, Entry>| -> BTreeMap<String, (String, String)> {
        f.iter()
            .map(|(p, e)| (p.clone(), (e.mode.clone(), e.owner.clone())))
            .collect()
    };
    assert_eq!(
        entries(&docker_files),
        entries(&files),
        "Dockerfile vs build-image.sh: files"
    );
    assert_eq!(docker_passwd, passwd);

    // Run: --version, as the entrypoint and as the bare command the Helm chart runs.
    let host_version = ok(Command::new(bin()).arg("--version"));
    let out = output(&mut podman_run(&[
        "--rm",
        "--name",
        &container("version"),
        &image,
        "--version",
    ]));
    if !out.status.success() {
        if cannot_run_containers_here(&out)
            && std::env::var_os("DVSIGNER_REQUIRE_CONTAINER_RUN").is_none()
        {
            shout(&format!(
                "CONTAINER RUN NOT TESTED: podman cannot run containers on this machine.\n\
                 The images were built and inspected; running them was skipped.\n\
                 Set DVSIGNER_REQUIRE_CONTAINER_RUN=1 to make this a failure (CI does).\n{}",
                text(&out)
            ));
            let problems = cleanup.run();
            assert!(problems.is_empty(), "cleanup: {problems:?}");
            return;
        }
        panic!("podman run {image} --version failed:\n{}", text(&out));
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout), host_version);
    let by_path = ok(&mut podman_run(&[
        "--rm",
        "--name",
        &container("path"),
        "--entrypoint",
        "dvsigner",
        &image,
        "--version",
    ]));
    assert_eq!(by_path, host_version);

    // A config mounted read-only, checked inside the container.
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(
        config_dir.join("signer.yaml"),
        "listen: 0.0.0.0:9000\ninsecure-http: true\ndata-dir: /var/lib/dvsigner\n\
         keystores: /etc/dvsigner/keystores\n\
         keystores-passwords: /etc/dvsigner/keystores/passwords\n\
         network: mainnet\nslashing-protection-pruning-epochs-to-keep: 321\n",
    )
    .expect("signer.yaml");
    std::fs::write(
        config_dir.join("bad.yaml"),
        "listen: 0.0.0.0:9000\nlisen: 1\n",
    )
    .expect("bad");
    // The container's user (10001) must be able to read the mounted files.
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), &config_dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config_mount = format!("{}:/etc/dvsigner/config:ro", config_dir.display());
    let keystores_mount = format!(
        "{}:/etc/dvsigner/keystores:ro",
        repo().join("keystores/dev").display()
    );
    let checked = ok(&mut podman_run(&[
        "--rm",
        "--name",
        &container("check"),
        "--read-only",
        "-v",
        &config_mount,
        &image,
        "signer",
        "--config",
        "/etc/dvsigner/config/signer.yaml",
        "--check-config",
    ]));
    for line in [
        "# config file: /etc/dvsigner/config/signer.yaml",
        "listen: 0.0.0.0:9000  # config file",
        "slashing-protection-pruning-epochs-to-keep: 321  # config file",
    ] {
        assert!(
            checked.lines().any(|l| l == line),
            "--check-config output lacks {line:?}:\n{checked}"
        );
    }
    let bad = output(&mut podman_run(&[
        "--rm",
        "--name",
        &container("bad"),
        "--read-only",
        "-v",
        &config_mount,
        &image,
        "signer",
        "--config",
        "/etc/dvsigner/config/bad.yaml",
        "--check-config",
    ]));
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("lisen"),
        "a config with an unknown key must be refused, naming it:\n{}",
        text(&bad)
    );

    // A signer: read-only root filesystem, data in the image's volume, published on loopback.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:9000");
    let signer = container("signer");
    ok(&mut podman_run(&[
        "--detach",
        "--name",
        &signer,
        "--read-only",
        "-p",
        &publish,
        "-v",
        &config_mount,
        "-v",
        &keystores_mount,
        &image,
        "signer",
        "--config",
        "/etc/dvsigner/config/signer.yaml",
    ]));
    let base = format!("http://127.0.0.1:{port}");
    wait_upcheck(&format!("{base}/upcheck"), &signer).await;
    let mut expected: Vec<String> = (0..5)
        .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
        .collect();
    expected.sort();
    assert_eq!(common::http::public_keys(&base).await, expected);
    // Signing records the attestation in the SQLite database in /var/lib/dvsigner first: the
    // volume is writable for the non-root user while the root filesystem is not.
    common::http::assert_signs(&base, &interop_secret_key(0), 7).await;
    let state = ok(&mut podman(&[
        "inspect",
        "--format",
        "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}",
        &signer,
    ]));
    assert_eq!(state.trim(), "true 10001:10001");
    // The process itself: real, effective, saved and file-system ids, read on the host and
    // mapped back into the container's user namespace (the identity for rootful podman).
    let pid = ok(&mut podman(&[
        "inspect",
        "--format",
        "{{.State.Pid}}",
        &signer,
    ]));
    let proc_file = |name: &str| {
        std::fs::read_to_string(format!("/proc/{}/{name}", pid.trim()))
            .expect("/proc of the signer")
    };
    let status = proc_file("status");
    for (field, map) in [("Uid:", "uid_map"), ("Gid:", "gid_map")] {
        let map = proc_file(map);
        let ids: Vec<u64> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|l| {
                l.split_whitespace()
                    .map(|id| in_namespace(id.parse().expect("id"), &map))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            ids, [10001; 4],
            "{field} of the signer process:\n{status}\n{map}"
        );
    }

    // SIGTERM reaches dvsigner as PID 1 and it exits by itself (0), not by SIGKILL (137).
    ok(&mut podman(&["stop", "--time", "30", &signer]));
    let exit = ok(&mut podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &signer,
    ]));
    let logs = text(&output(&mut podman(&["logs", &signer])));
    assert_eq!(exit.trim(), "0", "exit code after podman stop:\n{logs}");
    assert!(logs.contains("signer stopped"), "{logs}");

    let problems = cleanup.run();
    assert!(problems.is_empty(), "cleanup: {problems:?}");
    for gone in [&image, &docker_image] {
        let exists = output(&mut podman(&["image", "exists", gone]));
        assert!(!exists.status.success(), "{gone} was not removed");
    }
    let left = ok(&mut podman(&[
        "ps",
        "--all",
        "--filter",
        &format!("name={unique}"),
        "--format",
        "{{.Names}}",
    ]));
    assert!(left.trim().is_empty(), "containers left: {left}");
}

/// The Helm chart's default image and the README's image name follow the scheme the image is
/// built with: `dvsigner/dvsigner:<Cargo package version>`.
#[test]
fn chart_and_readme_use_the_image_name_and_version() {
    let values: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo().join("helm/dvsigner/values.yaml")).expect("values.yaml"),
    )
    .expect("values YAML");
    assert_eq!(values["image"]["repository"], "dvsigner/dvsigner");
    let chart: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo().join("helm/dvsigner/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart YAML");
    // An empty tag means the chart's appVersion, which must be the package version.
    let tag = values["image"]["tag"].as_str().unwrap_or_default();
    let tag = if tag.is_empty() {
        chart["appVersion"].as_str().unwrap_or_default()
    } else {
        tag
    };
    assert_eq!(tag, VERSION, "the chart's default image tag");
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    assert!(
        readme.contains(&format!("dvsigner/dvsigner:{VERSION}")),
        "README names the image dvsigner/dvsigner:{VERSION}"
    );
}
