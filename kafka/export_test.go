package kafka

// ErrNotProbed is Ready's reason before the first probe answered.
var ErrNotProbed = errNotProbed
