//! The functions as Lambda runs them: each instance one `aws-lambda-rie` around the function's
//! binary with the function's environment, serving one invocation at a time; a function scales
//! out to more instances when all are busy (up to its concurrency), and an idle instance
//! serves the next invocation warm.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::rie::Rie;

/// Everything an instance of a function starts from.
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: PathBuf,
    /// Exactly what the process gets: the template's variables, resolved, and what Lambda sets.
    pub environment: Vec<(String, String)>,
    pub log_dir: PathBuf,
}

/// The instances of one function.
pub struct Function {
    pub spec: FunctionSpec,
    rie: PathBuf,
    idle: Mutex<Vec<Rie>>,
    started: AtomicUsize,
    concurrency: Arc<Semaphore>,
    http: reqwest::Client,
}

/// An instance serving one invocation; back to the idle ones when dropped after its answer
/// was read to the end, stopped when dropped before (a caller gone, an integration timeout):
/// the emulator would still be busy with it.
pub struct Busy {
    rie: Option<Rie>,
    done: bool,
    function: Arc<Function>,
    _permit: OwnedSemaphorePermit,
}

impl Busy {
    /// The answer was read to the end.
    pub fn finished(&mut self) {
        self.done = true;
    }

    pub fn log(&self) -> PathBuf {
        self.rie.as_ref().map(|r| r.log.clone()).unwrap_or_default()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(mut rie) = self.rie.take()
            && self.done
            && rie.exited().is_none()
        {
            self.function.idle.lock().unwrap_or_else(|e| e.into_inner()).push(rie);
        }
    }
}

impl Function {
    pub fn new(spec: FunctionSpec, rie: PathBuf, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            spec,
            rie,
            idle: Mutex::new(Vec::new()),
            started: AtomicUsize::new(0),
            concurrency: Arc::new(Semaphore::new(concurrency)),
            http: reqwest::Client::new(),
        })
    }

    /// Every instance's log, oldest first.
    pub fn logs(&self) -> Vec<PathBuf> {
        (1..=self.started.load(Ordering::SeqCst))
            .map(|n| self.log_of(n))
            .collect()
    }

    fn log_of(&self, n: usize) -> PathBuf {
        self.spec.log_dir.join(format!("{}-{n}.log", self.spec.logical_id))
    }

    /// An idle instance, or a new one when none is (waiting while the function is at its
    /// concurrency); then the invocation, answered as the emulator answers it.
    pub async fn invoke(self: &Arc<Self>, event: Vec<u8>) -> Result<(Busy, reqwest::Response)> {
        let permit = self.concurrency.clone().acquire_owned().await?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let rie = match idle {
            Some(rie) => rie,
            None => {
                let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
                let mut environment = self.spec.environment.clone();
                environment.push((
                    "AWS_LAMBDA_LOG_STREAM_NAME".into(),
                    format!("$LATEST-{}-{n}", self.spec.logical_id),
                ));
                Rie::start(&self.rie, &self.spec.binary, &environment, &self.log_of(n))
                    .await
                    .with_context(|| format!("{}: starting an instance", self.spec.logical_id))?
            }
        };
        let busy = Busy {
            rie: Some(rie),
            done: false,
            function: self.clone(),
            _permit: permit,
        };
        let url = busy.rie.as_ref().map(|r| r.invoke_url.clone()).unwrap_or_default();
        let answer = self
            .http
            .post(url)
            .body(event)
            .send()
            .await
            .with_context(|| format!("invoking {}", self.spec.logical_id))?;
        Ok((busy, answer))
    }
}
