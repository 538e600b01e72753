//! A Postgres cluster of a test's own (initdb in a temporary directory, on
//! a free port), which the test may stop and start: what the shared server
//! at `DATABASE_URL` cannot be put through. Run as the `postgres` OS user
//! when the tests run as root (initdb refuses root), as the current user
//! otherwise. A missing initdb fails the test with a message, never skips
//! it.

use std::path::PathBuf;
use std::process::Command;

use sqlx::Connection;

/// A running cluster; stopped (immediately) and removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    as_postgres: bool,
}

/// The directory of initdb and pg_ctl: PATH's, or the newest of
/// /usr/lib/postgresql/*/bin (Debian's layout).
fn postgres_bin() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return dir;
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "this test runs a Postgres cluster of its own and needs initdb and pg_ctl, which are \
             neither on PATH nor in /usr/lib/postgresql/*/bin: install the PostgreSQL server \
             (e.g. apt-get install postgresql) or put its bin directory on PATH"
        )
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Cluster {
    /// initdb, then start.
    pub fn start() -> Cluster {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temporary directory");
        let as_postgres = running_as_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let cluster = Cluster {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `program` of the Postgres bin directory (as postgres when
    /// root); fails the test with its output if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        } else {
            Command::new(&path)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        }
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.dir.path().join("log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m <mode>` (waits until it is down).
    pub fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                mode,
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
    }

    /// Starts it again after [`Cluster::stop`] (waits until it accepts
    /// connections).
    pub fn restart_after_stop(&self) {
        self.pg_ctl_start();
    }

    /// The superuser's URL of `database`.
    pub fn admin_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A URL of `database` as `role` (trust auth: no password).
    pub fn url(&self, role: &str, database: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` (one or more statements) as the superuser on `database`.
    pub async fn execute(&self, database: &str, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url(database))
            .await
            .expect("connect to the test cluster");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    /// The cluster's server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        let _ = command
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
