use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Inventory {
    items: Vec<(String, u32)>,
}

#[managed]
impl Inventory {
    /// Adds `n` of `name`.
    pub fn add(&mut self, name: String, n: u32) {
        self.items.push((name, n));
    }

    pub fn total(&self) -> u32 {
        self.items.iter().map(|(_, n)| n).sum()
    }

    pub fn snapshot(&self) -> Self {
        Inventory {
            items: self.items.clone(),
        }
    }

    fn with((a, b): (u32, u32), c: Option<Vec<u8>>) -> u32 {
        a + b + c.map_or(0, |c| c.len() as u32)
    }

    fn with_pattern(&self, (a, b): (u32, u32)) -> u32 {
        a + b + Self::with((0, 0), None)
    }
}

fn main() {
    // The proxy's methods have the same names; each returns a `multiproc::Result`.
    fn _uses(p: InventoryProxy) -> multiproc::Result<u32> {
        p.add("bolt".into(), 3)?;
        let _copy: Inventory = p.snapshot()?;
        Ok(p.total()? + p.with_pattern((1, 2))?)
    }
    let _ = Inventory::with((1, 2), None);
}
