//! A TCP forwarder in front of a real store server that a test can cut and
//! restore: the outage tests need a store that stops answering without
//! stopping the shared server other tests are using.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listen on 127.0.0.1:0 and forward every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let up = Arc::clone(&up);
            let conns = Arc::clone(&conns);
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(client); // refused while cut
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    conns.lock().expect("proxy lock").push(task);
                }
            })
        };
        Proxy {
            addr,
            up,
            conns,
            accept,
        }
    }

    /// Drop every open connection and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().expect("proxy lock").drain(..) {
            task.abort();
        }
    }

    /// Forward again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
