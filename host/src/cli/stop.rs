//! Ctrl-C and SIGTERM (what schedulers send before they kill a job) during
//! `train`, `sft` and `eval`: the first asks the run to stop after the step
//! (or chunk of questions) under way, keeping what it reached for
//! `--resume`; a second exits at once.

use mmsr_trainer::train::{StopRequest, Stopped};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::signal::unix::{SignalKind, signal};

/// The shell's convention: 128 + the signal's number.
const SIGINT_EXIT: u8 = 130;
const SIGTERM_EXIT: u8 = 143;

/// Runs `job` with a stop request that the process's signals set. A job
/// that returns [`Stopped`] exits with the signal's code and says how to
/// continue; no error is printed for it.
pub fn stoppable(
    job: impl FnOnce(StopRequest) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let stop = StopRequest::default();
    let code = Arc::new(AtomicU8::new(SIGINT_EXIT));
    listen(stop.clone(), code.clone())?;
    match job(stop) {
        Err(e) => match e.downcast_ref::<Stopped>() {
            Some(stopped) => {
                eprintln!("{stopped}");
                Ok(ExitCode::from(code.load(Ordering::SeqCst)))
            }
            None => Err(e),
        },
        ok => ok,
    }
}

/// Installs the handlers before it returns (a signal after that is never
/// the default kill), then waits for signals on a thread of its own.
fn listen(stop: StopRequest, code: Arc<AtomicU8>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = {
        let _in_rt = rt.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    std::thread::Builder::new()
        .name("mmsr-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    let (name, exit) = tokio::select! {
                        _ = int.recv() => ("Ctrl-C", SIGINT_EXIT),
                        _ = term.recv() => ("SIGTERM", SIGTERM_EXIT),
                    };
                    if stop.is_requested() {
                        eprintln!(
                            "\n{name} again: exiting now; what was not yet kept (the steps since the last checkpoint, an eval's chunk under way) is lost"
                        );
                        // Not `process::exit`: its destructors would tear
                        // libtorch down under the thread still using it.
                        // SAFETY: `_exit` ends the process; nothing after it runs.
                        unsafe { libc::_exit(i32::from(exit)) };
                    }
                    code.store(exit, Ordering::SeqCst);
                    stop.request();
                    eprintln!(
                        "\n{name}: stopping after the step (or chunk of questions) under way, keeping what is done (--resume continues it); {name} again exits now"
                    );
                }
            })
        })?;
    Ok(())
}
