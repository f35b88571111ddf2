//! The call options that a pool sets for all its calls and a call for
//! itself: one list of setters, for [`PoolBuilder`](super::PoolBuilder)
//! and [`Call`](super::Call).

/// The sandbox and limit settings shared by `PoolBuilder` and `Call`.
macro_rules! call_option_setters {
    () => {
        /// Interrupt the call after this long; it fails with
        /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout). The worker enforces it with an epoch
        /// interrupt and survives; if it has not stopped `grace` later, the
        /// host kills it. Default: none.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.options.timeout = Some(timeout);
            self
        }

        /// How long an interrupted call (timed out, or dropped with
        /// [`Cancel::Interrupt`](crate::Cancel::Interrupt)) has to stop before its worker is killed.
        /// Default: [`DEFAULT_GRACE`](crate::DEFAULT_GRACE).
        pub fn grace(mut self, grace: std::time::Duration) -> Self {
            self.grace = grace;
            self
        }

        /// The largest result the call may return, in bytes as it travels
        /// (MessagePack-encoded: a `list<u8>` of n bytes is n plus a few).
        /// A larger result fails in the worker, before it is sent, with
        /// [`ErrorKind::ResourceLimit`](crate::ErrorKind::ResourceLimit)
        /// and [`Limit::Result`](crate::Limit::Result); the worker is
        /// kept. For [`map`](crate::Pool::map), each item's result.
        /// Default: none.
        ///
        /// ```no_run
        /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
        /// let err = pool
        ///     .call::<Vec<u8>>(&job, "make-bytes", (1_000_000u32,))
        ///     .max_result_bytes(64 * 1024)
        ///     .await
        ///     .unwrap_err();
        /// assert_eq!(err.limit(), Some(wasmpool::Limit::Result));
        /// # Ok(()) }
        /// ```
        pub fn max_result_bytes(mut self, bytes: u64) -> Self {
            self.options.max_result = Some(bytes);
            self
        }

        /// The most the guest may write to each of its stdout and stderr
        /// during the call, in bytes, whether they are inherited or
        /// captured. A write past it fails in the guest; a guest that
        /// traps as a result (a Rust guest's `println!` panics) fails with
        /// [`ErrorKind::ResourceLimit`](crate::ErrorKind::ResourceLimit)
        /// and [`Limit::Output`](crate::Limit::Output), and the worker is
        /// kept. A guest that ignores the failed write goes on, its output
        /// cut short. Default: [`CAPTURE_LIMIT`](crate::CAPTURE_LIMIT)
        /// for a captured stream, none for an inherited one; a discarded
        /// stream is never limited.
        pub fn max_output_bytes(mut self, bytes: u64) -> Self {
            self.options.max_output = Some(bytes);
            self
        }

        /// The most linear memory the guest may grow to, in bytes. Growing
        /// past it fails in the guest; a guest that traps as a result fails
        /// with [`ErrorKind::ResourceLimit`](crate::ErrorKind::ResourceLimit) and
        /// [`Limit::Memory`](crate::Limit::Memory). Default: none (up to
        /// the 4 GiB a 32-bit memory can address).
        pub fn max_memory(mut self, bytes: u64) -> Self {
            self.options.max_memory = Some(bytes);
            self
        }

        /// The call's fuel budget: a deterministic bound on the wasm
        /// instructions it may run. Running out fails with
        /// [`ErrorKind::ResourceLimit`](crate::ErrorKind::ResourceLimit) and
        /// [`Limit::Fuel`](crate::Limit::Fuel);
        /// [`Call::report`](crate::Call::report) tells how much was used. It counts the call
        /// itself, not the instantiation before it. On a
        /// [`PoolBuilder`](crate::PoolBuilder) this also turns fuel metering on for the pool,
        /// which costs about 20% of guest speed; a call can set a budget
        /// only on such a pool.
        pub fn fuel(mut self, fuel: u64) -> Self {
            self.options.fuel = Some(fuel);
            self
        }

        /// Makes the call reproducible: random numbers (secure and
        /// insecure) come from a sequence derived from `seed`, the wall
        /// clock reads a fixed time, and the monotonic clock advances by 1
        /// µs per reading. Not for guests that need real randomness.
        /// Default: real random numbers and clocks.
        pub fn deterministic(mut self, seed: u64) -> Self {
            self.options.deterministic = Some(seed);
            self
        }

        /// Where the guest's stdout goes. Default: [`Stdio::Inherit`](crate::Stdio::Inherit).
        pub fn stdout(mut self, mode: $crate::Stdio) -> Self {
            self.options.stdout = mode;
            self
        }

        /// Where the guest's stderr goes. Default: [`Stdio::Inherit`](crate::Stdio::Inherit). A
        /// panic message is found in every mode.
        pub fn stderr(mut self, mode: $crate::Stdio) -> Self {
            self.options.stderr = mode;
            self
        }

        /// Sets an environment variable the guest sees. By default the
        /// guest sees none.
        pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.options.env.push((key.into(), value.into()));
            self
        }

        /// Sets a configuration value the guest reads through
        /// `wasi:config/store` (`get` and `get-all`): a key a pool sets is
        /// seen by all its calls, and a call's own value for the same key
        /// wins over the pool's. A key set by neither reads as `none`. By
        /// default the guest sees no configuration. Unlike
        /// [`env`](Self::env), a value set on a call costs its worker no
        /// new instance: the guest reads it from the call on, not while it
        /// is instantiated.
        ///
        /// wasmpool serves `wasi:config@0.2.0-rc.1`, as wasmtime does.
        ///
        /// ```no_run
        /// # async fn demo(job: wasmpool::Job) -> Result<(), wasmpool::Error> {
        /// let pool = wasmpool::Pool::builder()
        ///     .config("region", "eu-west")
        ///     .config("mode", "fast")
        ///     .build()?;
        /// // The guest reads `region` = "us-east" and `mode` = "fast".
        /// let n: u64 = pool.call(&job, "work", (7u64,)).config("region", "us-east").await?;
        /// # Ok(()) }
        /// ```
        pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.options.config.insert(key.into(), value.into());
            self
        }

        /// Passes the host's own value of environment variable `key` to the
        /// guest, if the host has it: an allowlist entry. The value is read
        /// when this is called.
        pub fn env_from_host(mut self, key: impl Into<String>) -> Self {
            let key = key.into();
            if let Ok(value) = std::env::var(&key) {
                self.options.env.push((key, value));
            }
            self
        }

        /// Lets the guest make outbound `wasi:http` requests to
        /// destinations that `pattern` matches. By default a guest may make
        /// none: every request fails with `wasi:http`'s
        /// `HTTP-request-denied`. A call's patterns add to its pool's.
        ///
        /// A pattern is `scheme://host[:port]`:
        ///
        /// - the scheme is `http` or `https`;
        /// - the host is a name (`api.example.com`), a wildcard
        ///   (`*.example.com`: any name below `example.com`, not
        ///   `example.com` itself), or an IP address (`127.0.0.1`,
        ///   `[::1]`);
        /// - without a port, only the scheme's default (80 or 443) matches.
        ///
        /// The worker never connects anywhere: it hands each request to
        /// the host, which checks it against the call's patterns (its own
        /// copy; a worker cannot widen them) and makes it. The host
        /// resolves the name first and connects only to an address it
        /// checked: a name that resolves to a loopback, private or
        /// link-local address (a DNS rebinding, say) is denied, unless a
        /// pattern allows that address itself. Redirects are not followed:
        /// the guest gets the 3xx, and the request it may make to the new
        /// location is checked like any other. Requests travel whole:
        /// the body of a request up to 16 MiB, the response's up to
        /// [`max_http_response_bytes`](Self::max_http_response_bytes). See
        /// also [`http_timeout`](Self::http_timeout) and
        /// [`max_http_requests`](Self::max_http_requests).
        ///
        /// A pattern is checked when the pool is built or the call made:
        /// a bad one fails with [`ErrorKind::Config`](crate::ErrorKind::Config).
        /// A cluster pool refuses outbound HTTP with
        /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
        ///
        /// ```no_run
        /// # async fn demo(job: wasmpool::Job) -> Result<(), wasmpool::Error> {
        /// use std::time::Duration;
        /// let pool = wasmpool::Pool::builder()
        ///     .allow_http("https://api.example.com")
        ///     .allow_http("https://*.cdn.example.com")
        ///     .http_timeout(Duration::from_secs(5))
        ///     .build()?;
        /// // This call may also reach a local service, by its address.
        /// let page: String = pool
        ///     .call(&job, "fetch", ("http://127.0.0.1:8080/status",))
        ///     .allow_http("http://127.0.0.1:8080")
        ///     .max_http_response_bytes(1 << 20)
        ///     .await?;
        /// # Ok(()) }
        /// ```
        pub fn allow_http(mut self, pattern: impl Into<String>) -> Self {
            self.options.http.allow.push(pattern.into());
            self
        }

        /// How long one outbound HTTP request may take, from resolving its
        /// host to the last byte of its response. One that takes longer
        /// fails in the guest with `wasi:http`'s `connection-timeout` (not
        /// yet connected) or `HTTP-response-timeout`. Default:
        /// [`DEFAULT_HTTP_TIMEOUT`](crate::DEFAULT_HTTP_TIMEOUT). See
        /// [`allow_http`](Self::allow_http).
        pub fn http_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.options.http.timeout = Some(timeout);
            self
        }

        /// The largest outbound HTTP response body the guest may get, in
        /// bytes. A larger one fails in the guest with `wasi:http`'s
        /// `HTTP-response-body-size`, and the host stops reading it. At most
        /// 512 MiB: the response travels whole (more is a
        /// [`ErrorKind::Config`](crate::ErrorKind::Config) error). Default:
        /// [`DEFAULT_MAX_HTTP_RESPONSE_BYTES`](crate::DEFAULT_MAX_HTTP_RESPONSE_BYTES).
        /// See [`allow_http`](Self::allow_http).
        pub fn max_http_response_bytes(mut self, bytes: u64) -> Self {
            self.options.http.max_response = Some(bytes);
            self
        }

        /// The most outbound HTTP requests one call may make; the next
        /// ones fail in the guest with `wasi:http`'s
        /// `connection-limit-reached`. For [`map`](crate::Pool::map), the
        /// items sent to a worker together share their limits. Default:
        /// [`DEFAULT_MAX_HTTP_REQUESTS`](crate::DEFAULT_MAX_HTTP_REQUESTS).
        /// See [`allow_http`](Self::allow_http).
        pub fn max_http_requests(mut self, requests: u32) -> Self {
            self.options.http.max_requests = Some(requests);
            self
        }

        /// Makes the host directory `host` visible to the guest as `guest`
        /// (through cap-std: the guest cannot leave it by `..` or
        /// symlinks). By default the guest sees no files at all. The
        /// directory must exist: a pool checks it when it is built, a call
        /// before it is sent, and fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if it
        /// cannot be opened.
        ///
        /// A confined worker process reaches only the directories it was
        /// started for (see [`PoolBuilder::confine`](crate::PoolBuilder::confine)):
        /// a call with directories of its own runs on a worker started for
        /// exactly its directories, which later calls with the same ones
        /// reuse.
        pub fn preopen_dir(
            mut self,
            host: impl Into<std::path::PathBuf>,
            guest: impl Into<String>,
            access: $crate::DirAccess,
        ) -> Self {
            self.options.preopens.push($crate::wire::Preopen {
                host: host.into(),
                guest: guest.into(),
                access,
            });
            self
        }
    };
}

pub(super) use call_option_setters;
