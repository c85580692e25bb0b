//! Processes started by tests: the workspace's binaries and small helpers, each stopped by
//! pid when its guard drops.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::{Error, Result};

/// Path of a binary of this workspace, built in the same profile as the running test
/// (`cargo build --workspace --bins` puts it there; the README's test command does that).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests live in target/<profile>/deps/, binaries (benchmarks, chaos) in target/<profile>/.
    let mut profile_dir = exe.parent().expect("the executable has a directory");
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().expect("deps/ has a parent");
    }
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        bin.display()
    );
    bin
}

/// Stops `pid` once this test process is gone, even when it dies without running destructors
/// (a panic in a static's owner, SIGKILL, abort).
fn watchdog(pid: u32) {
    // The start time (field 22 of /proc/PID/stat) guards against killing a reused pid.
    let script = r#"start=$(cut -d' ' -f22 "/proc/$2/stat" 2>/dev/null) || exit 0
alive() { [ "$(cut -d' ' -f22 "/proc/$2/stat" 2>/dev/null)" = "$start" ]; }
while kill -0 "$1" 2>/dev/null && alive "$@"; do sleep 1; done
alive "$@" || exit 0
kill -CONT "$2"; kill -TERM "$2"; sleep 3; alive "$@" && kill -KILL "$2""#;
    let _ = Command::new("setsid")
        .args([
            "bash",
            "-c",
            script,
            "watchdog",
            &std::process::id().to_string(),
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A child process that is stopped when dropped: SIGTERM, then SIGKILL after 5 s.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    log: PathBuf,
    /// Length of the log when this process started: a restarted process appends to the log
    /// of its predecessor, and only its own lines count.
    log_start: usize,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let log_start = usize::try_from(file.metadata()?.len()).unwrap_or(0);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| Error::Command {
                what: format!("spawn {name}"),
                detail: e.to_string(),
            })?;
        watchdog(child.id());
        Ok(Self {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
            log_start,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// This process's part of the log so far.
    pub fn log_text(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(text.get(self.log_start..).unwrap_or_default()).into_owned()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid() as i32), signal).map_err(|e| Error::Command {
            what: format!("kill -{signal} {}", self.name),
            detail: e.to_string(),
        })
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None: killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("child present");
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("{} to exit", self.name)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the log contains a line with `marker` and returns the text after it up to
    /// the end of that line (e.g. the bound address after `http=`).
    pub fn wait_for_log(&mut self, marker: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            // Only a whole line counts: the process may be halfway through writing it, and a
            // cut "127.0.0.1:4" would parse as the wrong port.
            if let Some(pos) = text.find(marker)
                && let Some(line) = text[pos + marker.len()..].split_once('\n').map(|(line, _)| line)
            {
                let value = line
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap_or("");
                return Ok(value.to_owned());
            }
            if !self.is_running() {
                return Err(Error::Command {
                    what: self.name.clone(),
                    detail: format!("exited before logging {marker:?}; log:\n{text}"),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "{} to log {marker:?}; log:\n{text}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(child.id(), Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            let _ = child.wait();
        }
    }
}

/// Stops `pid` as the harness stops every process it started: SIGCONT (a SIGSTOPped process
/// would never act on SIGTERM), SIGTERM, then SIGKILL unless `exited` says it is gone within
/// `grace`.
pub fn terminate(pid: u32, grace: Duration, mut exited: impl FnMut() -> bool) {
    let pid = Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if exited() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
}

/// Starts `program` in a session of its own (it outlives the caller and a Ctrl-C of its
/// terminal), with stdout and stderr to `DIR/NAME.log` and its pid in `DIR/NAME.pid`; for
/// processes that keep running after the script that started them (the demo), stopped with
/// [`stop_detached`].
pub fn spawn_detached(dir: &Path, name: &str, program: &OsStr, args: &[OsString]) -> Result<u32> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    // setsid(1) execs the program in place: the pid is the program's.
    let child = Command::new("setsid")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| Error::Command {
            what: format!("spawn {name}"),
            detail: e.to_string(),
        })?;
    std::fs::write(dir.join(format!("{name}.pid")), format!("{}\n", child.id()))?;
    Ok(child.id())
}

/// Stops every process whose pid file [`spawn_detached`] wrote in `dir` ([`terminate`], with
/// 10 s to exit), and removes the pid files.
pub fn stop_detached(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension() != Some(OsStr::new("pid")) {
            continue;
        }
        let pid = std::fs::read_to_string(&path)?.trim().parse::<u32>().ok();
        if let Some(pid) = pid.filter(|pid| alive(*pid)) {
            terminate(pid, Duration::from_secs(10), || !alive(pid));
        }
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// Whether a process `pid` exists (`kill -0`).
fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
}
