//! The harness's process handling for shell scripts (the demo): start a process that keeps
//! running after the script, wait until it answers over HTTP, and stop by pid what was
//! started, the way the tests stop theirs (`lockstep_e2e::process`).
//!
//! - `lockstep-e2e-proc start --dir DIR NAME -- PROGRAM [ARGS...]`: starts PROGRAM in a session
//!   of its own, logging to `DIR/NAME.log`, its pid in `DIR/NAME.pid`;
//! - `lockstep-e2e-proc wait-http URL [--timeout-s 30]`: waits until GET URL answers below 400;
//! - `lockstep-e2e-proc stop --dir DIR`: SIGCONT, SIGTERM and, after 10 s, SIGKILL to every
//!   process with a pid file in DIR; removes the pid files.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lockstep_e2e::process;

#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-proc")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Starts a process that outlives this command.
    Start {
        /// Where its log and pid file go.
        #[arg(long)]
        dir: PathBuf,
        /// Its name: `NAME.log`, `NAME.pid`.
        name: String,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// Waits until GET URL answers with a status below 400.
    WaitHttp {
        url: String,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
    /// Stops every process started with `start --dir DIR`.
    Stop {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Start { dir, name, command } => {
            let (program, args) = command.split_first().context("a program to start")?;
            process::spawn_detached(&dir, &name, program, args)?;
        }
        Cmd::WaitHttp { url, timeout_s } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let http = lockstep_e2e::check::http();
            let answered = runtime.block_on(lockstep_e2e::eventually(
                &url,
                Duration::from_secs(timeout_s),
                || async {
                    let response = http.get(&url).send().await.ok()?;
                    (response.status().as_u16() < 400).then_some(())
                },
            ));
            if answered.is_err() {
                bail!("timed out waiting for {url}");
            }
        }
        Cmd::Stop { dir } => {
            if dir.is_dir() {
                process::stop_detached(&dir)?;
            }
        }
    }
    Ok(())
}
