//! Places the functions that `launcher` runs in its steady state together (see `hivehub_memory`).

fn main() {
    hivehub_memory::build::link_order("launcher", "link-order.txt");
}
