//! A plugin that keeps state across a session's calls, and exports
//! resources: counters and tags.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "session" });

use std::cell::{Cell, RefCell};

use exports::wasmpool::jobs::counters::{self, CounterBorrow};

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static STATE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DROPPED: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    static LIVE: Cell<u32> = const { Cell::new(0) };
}

struct Session;

impl Guest for Session {
    fn bump() -> u64 {
        COUNT.with(|c| {
            c.set(c.get() + 1);
            c.get()
        })
    }

    fn grow(n: u32) -> u64 {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.extend(std::iter::repeat_n(7u8, n as usize));
            s.len() as u64
        })
    }

    fn fail() {
        panic!("the session's guest fails on purpose")
    }

    fn spin() {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

struct Counter {
    value: Cell<i64>,
}

impl Counter {
    fn new_counter(start: i64) -> Counter {
        LIVE.with(|l| l.set(l.get() + 1));
        Counter {
            value: Cell::new(start),
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
        DROPPED.with(|d| d.borrow_mut().push(self.value.get()));
    }
}

impl counters::GuestCounter for Counter {
    fn new(start: i64) -> Counter {
        Counter::new_counter(start)
    }

    fn add(&self, n: i64) -> i64 {
        self.value.set(self.value.get() + n);
        self.value.get()
    }

    fn get(&self) -> i64 {
        self.value.get()
    }

    fn fork(&self) -> counters::Counter {
        counters::Counter::new(Counter::new_counter(self.value.get()))
    }

    fn sum(a: CounterBorrow<'_>, b: CounterBorrow<'_>) -> counters::Counter {
        let total = a.get::<Counter>().value.get() + b.get::<Counter>().value.get();
        counters::Counter::new(Counter::new_counter(total))
    }
}

struct Tag(String);

impl counters::GuestTag for Tag {
    fn new(name: String) -> Tag {
        Tag(name)
    }

    fn name(&self) -> String {
        self.0.clone()
    }
}

impl counters::Guest for Session {
    type Counter = Counter;
    type Tag = Tag;

    fn total(a: CounterBorrow<'_>, b: CounterBorrow<'_>) -> i64 {
        a.get::<Counter>().value.get() + b.get::<Counter>().value.get()
    }

    fn consume(c: counters::Counter) -> i64 {
        c.get::<Counter>().value.get()
    }

    fn pair(start: i64) -> (counters::Counter, Vec<counters::Counter>) {
        let one = counters::Counter::new(Counter::new_counter(start));
        let many = (1..=2)
            .map(|i| counters::Counter::new(Counter::new_counter(start + i)))
            .collect();
        (one, many)
    }

    fn dropped() -> Vec<i64> {
        DROPPED.with(|d| d.borrow().clone())
    }

    fn live() -> u32 {
        LIVE.with(|l| l.get())
    }
}

export!(Session);
