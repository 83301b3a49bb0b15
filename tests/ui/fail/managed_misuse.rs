use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Store {
    items: Vec<String>,
}

#[managed]
impl Store {
    // A generic method: the server cannot know which one to call.
    fn find<T: ToString>(&self, what: T) -> bool {
        self.items.contains(&what.to_string())
    }

    // A reference to the caller's state cannot cross to the manager.
    fn add(&mut self, item: &str) {
        self.items.push(item.to_owned());
    }

    // Nor can a reference into the server's.
    fn first(&self) -> &String {
        &self.items[0]
    }

    // The object stays on the server: it cannot be moved out.
    fn into_items(self) -> Vec<String> {
        self.items
    }
}

struct Generic<T>(T);

#[managed]
impl<T> Generic<T> {
    fn get(&self) -> u32 {
        0
    }
}

fn main() {}
