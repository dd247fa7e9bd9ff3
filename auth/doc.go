// Package auth decides who may connect to subsock and what they may do once
// connected: it verifies JWT connect tokens (HS256 with a shared secret,
// RS256/ES256 with public keys from PEM files or a JWKS document), turns
// their "subs" / "pubs" claims into topic patterns, checks the publish API
// key and the Origin allow-list of WebSocket handshakes.
//
// Rules:
//   - Pattern, Patterns, Origins and *JWT are safe for concurrent use once
//     built; Pattern.Match and Patterns.Allows allocate nothing.
//   - A JWT with a JWKSURL owns one goroutine that refreshes the key set;
//     Close stops it and waits for it. Without a JWKSURL no goroutine runs.
//   - Errors are the sentinels in errors.go, possibly wrapped with detail;
//     compare them with errors.Is. Their text is safe to show to the client.
//   - The package logs nothing and imports nothing from the layers above it.
package auth
