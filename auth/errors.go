package auth

import "errors"

var (
	// ErrNoToken reports a request that carries no token.
	ErrNoToken = errors.New("auth: no token")
	// ErrMalformed reports a token that is not a well-formed JWT or whose
	// claims have the wrong types.
	ErrMalformed = errors.New("auth: malformed token")
	// ErrSignature reports a signature that does not verify with the key.
	ErrSignature = errors.New("auth: invalid signature")
	// ErrExpired reports a token past its exp claim (plus Leeway).
	ErrExpired = errors.New("auth: token expired")
	// ErrNotYetValid reports a token before its nbf claim (minus Leeway).
	ErrNotYetValid = errors.New("auth: token not valid yet")
	// ErrAudience reports an aud claim that does not name Config.Audience.
	ErrAudience = errors.New("auth: wrong audience")
	// ErrIssuer reports an iss claim other than Config.Issuer.
	ErrIssuer = errors.New("auth: wrong issuer")
	// ErrAlgorithm reports alg "none", an algorithm no configured key
	// accepts, or an algorithm that does not fit the key the kid names.
	ErrAlgorithm = errors.New("auth: algorithm not allowed")
	// ErrUnknownKey reports a kid that no configured key carries, even
	// after a refresh of the JWKS document.
	ErrUnknownKey = errors.New("auth: unknown signing key")
	// ErrKeyPending is returned by VerifyCached for a token whose kid the
	// JWKS lacks when a refresh may bring it: AwaitKeys, then verify again.
	ErrKeyPending = errors.New("auth: signing key not fetched yet")
	// ErrBadPattern reports a topic pattern that does not parse.
	ErrBadPattern = errors.New("auth: bad topic pattern")
	// ErrNoKeySource reports a Config with no secret, key file or JWKS URL.
	ErrNoKeySource = errors.New("auth: no key source configured")
	// ErrBadKey reports a key file or JWKS document that holds no usable key.
	ErrBadKey = errors.New("auth: bad key")
	// ErrBadOrigin reports an allow-list entry that is not a host[:port].
	ErrBadOrigin = errors.New("auth: bad origin")
)
