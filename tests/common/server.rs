//! A real `lookalike` server for the HTTP tests: on its own thread and runtime, on 127.0.0.1
//! with a free port, healthy when `start` returns, stopped gracefully by `shutdown` or on drop.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookalike::engine::Engine;
use lookalike::server::{serve_with, ServerConfig};
use reqwest::blocking::Client;

/// The configuration of a server that writes: `token` for its writes, files under `root`
/// only, uploads kept in `root/uploads`.
pub fn writable(token: &str, root: &Path) -> ServerConfig {
    ServerConfig {
        token: Some(token.into()),
        roots: vec![root.to_path_buf()],
        upload_dir: root.join("uploads"),
        ..ServerConfig::default()
    }
}

pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Starts a server over `engine` and waits until `/healthz` answers.
    pub fn start(config: ServerConfig, engine: Arc<Engine>) -> Running {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let shutdown = async {
                    let _ = stopped.await;
                };
                serve_with(listener, config, engine, shutdown).await
            })
        });
        let running = Running {
            base,
            stop: Some(stop),
            thread: Some(thread),
        };
        running.wait_healthy();
        running
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn wait_healthy(&self) {
        let client = Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(self.url("/healthz"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} did not come up", self.base);
    }

    /// Triggers the graceful shutdown and waits for `serve_with` to return.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().map_or(Ok(()), |t| t.join().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
