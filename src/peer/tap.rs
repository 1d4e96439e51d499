//! A recording TCP relay: what a router in the middle would read, byte for
//! byte, per connection and per direction.
