//! Places the functions that `hubcore` runs in its steady state together (see `hivehub_memory`).

fn main() {
    hivehub_memory::build::link_order("hubcore", "link-order.txt");
}
