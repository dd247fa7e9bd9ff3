package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims is what a verified token grants.
type Claims struct {
	Subject string
	// Expires is the exp claim; zero when the token has none.
	Expires time.Time
	// Subs and Pubs come from the "subs" and "pubs" claims, arrays of
	// pattern strings; nil (allowing nothing) when the claim is absent.
	Subs, Pubs Patterns
}

// Verifier checks a token and returns its claims.
type Verifier interface {
	Verify(ctx context.Context, token string) (*Claims, error)
}

var _ Verifier = (*JWT)(nil)

// Config selects the keys tokens are verified with; at least one source
// must be set, and several may be combined. A zero field means its default.
type Config struct {
	// Secret enables HS256 with this shared secret.
	Secret []byte
	// PublicKeyFiles are PEM files, one RSA (RS256) or P-256 EC (ES256)
	// public key each. A key's kid is its file's base name, with or
	// without the extension.
	PublicKeyFiles []string
	// JWKSURL is a JWK Set document of RS256 / ES256 keys, fetched when
	// the JWT is built and every JWKSRefresh after.
	JWKSURL string
	// JWKSRefresh is the refresh period. Default: 5m.
	JWKSRefresh time.Duration
	// Audience, when set, must appear in the aud claim.
	Audience string
	// Issuer, when set, must equal the iss claim.
	Issuer string
	// Leeway is the clock skew allowed on exp and nbf. Default: 0.
	Leeway time.Duration
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
	HTTPClient *http.Client
}

// WithDefaults returns c with each zero field set to the default documented
// on it: the configuration NewJWT uses. Callers that show defaults (the
// command's flags) take them from here, so each is written once.
func (c Config) WithDefaults() Config {
	if c.JWKSRefresh <= 0 {
		c.JWKSRefresh = 5 * time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return c
}

// JWT verifies JSON Web Tokens (RFC 7519) with the keys of a Config. A
// token's exp is enforced when present (it is not required), its nbf
// likewise; aud and iss are checked when the Config sets them.
type JWT struct {
	parser *jwt.Parser
	secret []byte
	files  *keySet
	jwks   *jwks // nil without a JWKSURL
	algs   []string
	aud    string
	iss    string
	once   sync.Once
}

// NewJWT builds a verifier. It fails with ErrNoKeySource when cfg names no
// key, and with ErrBadKey when a key file or the first JWKS fetch yields
// no usable key, so a misconfigured node does not start. With a JWKSURL it
// starts the refresher goroutine; Close stops it.
func NewJWT(cfg Config) (*JWT, error) {
	return newJWT(cfg, nil)
}

// newJWT is NewJWT with a hook called after every periodic JWKS refresh.
func newJWT(cfg Config, onRefresh func(error)) (*JWT, error) {
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyFiles) == 0 && cfg.JWKSURL == "" {
		return nil, ErrNoKeySource
	}
	cfg = cfg.WithDefaults()
	j := &JWT{secret: cfg.Secret, aud: cfg.Audience, iss: cfg.Issuer}
	var err error
	if j.files, err = loadKeyFiles(cfg.PublicKeyFiles); err != nil {
		return nil, err
	}
	if len(j.secret) > 0 {
		j.algs = append(j.algs, algHS256)
	}
	if cfg.JWKSURL != "" {
		j.jwks = newJWKS(cfg.JWKSURL, cfg.HTTPClient, onRefresh)
		if err := j.jwks.fetch(context.Background()); err != nil {
			return nil, err
		}
		// Keys come and go with rotation, so both JWKS algorithms stay
		// allowed; keyFunc still holds each kid to its own key type.
		j.algs = append(j.algs, algRS256, algES256)
		j.jwks.start(cfg.JWKSRefresh)
	} else {
		for _, alg := range []string{algRS256, algES256} {
			if j.files.has(alg) {
				j.algs = append(j.algs, alg)
			}
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(j.algs), jwt.WithLeeway(cfg.Leeway)}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	j.parser = jwt.NewParser(opts...)
	return j, nil
}

// Close stops the JWKS refresher and waits for it. It is safe to call
// more than once; Verify keeps working with the last keys fetched.
func (j *JWT) Close() error {
	j.once.Do(func() {
		if j.jwks != nil {
			j.jwks.close()
		}
	})
	return nil
}

// tokenClaims is the claim set decoded from a token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Subs []string `json:"subs"`
	Pubs []string `json:"pubs"`
}

// Verify checks token's signature and claims. ctx bounds the JWKS refresh
// an unknown kid may trigger. Errors wrap the package's sentinels.
func (j *JWT) Verify(ctx context.Context, token string) (*Claims, error) {
	return j.verify(ctx, token, true)
}

// VerifyCached is Verify without any network call, for callers that must
// not wait (an event loop): where Verify would fetch the JWKS for a kid it
// lacks, it returns ErrKeyPending; AwaitKeys then says when to try again.
func (j *JWT) VerifyCached(token string) (*Claims, error) {
	return j.verify(context.Background(), token, false)
}

// AwaitKeys refreshes the JWKS for the kid token names, on a goroutine the
// JWT owns (one for all callers at a time), and calls done when the
// refresh has finished, successfully or not. Close waits for it.
func (j *JWT) AwaitKeys(token string, timeout time.Duration, done func()) {
	if j.jwks == nil {
		done()
		return
	}
	var kid string
	if t, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{}); err == nil {
		kid, _ = t.Header["kid"].(string)
	}
	j.jwks.refreshAsync(kid, timeout, done)
}

func (j *JWT) verify(ctx context.Context, token string, wait bool) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var tc tokenClaims
	var keyErr error // keyFunc's own error, kept to return it unprefixed
	tok, err := j.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		k, err := j.keyFunc(ctx, t, wait)
		keyErr = err
		return k, err
	})
	if keyErr != nil {
		return nil, keyErr
	}
	if err != nil {
		return nil, j.classify(tok, &tc, err)
	}
	c := &Claims{Subject: tc.Subject}
	if tc.ExpiresAt != nil {
		c.Expires = tc.ExpiresAt.Time
	}
	if c.Subs, err = ParsePatterns(ExpandUser(tc.Subs, tc.Subject)); err != nil {
		return nil, fmt.Errorf("subs claim: %w", err)
	}
	if c.Pubs, err = ParsePatterns(ExpandUser(tc.Pubs, tc.Subject)); err != nil {
		return nil, fmt.Errorf("pubs claim: %w", err)
	}
	return c, nil
}

// keyFunc picks the key for t. WithValidMethods has already refused any
// algorithm outside j.algs, "none" included.
func (j *JWT) keyFunc(ctx context.Context, t *jwt.Token, wait bool) (any, error) {
	alg := t.Method.Alg()
	if alg == algHS256 {
		return j.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		// Without a kid every key of the algorithm is tried, which keeps
		// the common single-key setup free of kid bookkeeping.
		keys := j.files.appendAlg(nil, alg)
		if j.jwks != nil {
			keys = j.jwks.keys.Load().appendAlg(keys, alg)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("%w: no %s key", ErrUnknownKey, alg)
		}
		return jwt.VerificationKeySet{Keys: keysOf(keys)}, nil
	}
	k, ok := j.files.lookup(kid)
	if !ok && j.jwks != nil {
		k, ok = j.jwks.keys.Load().lookup(kid)
		switch {
		case ok:
		case !wait && j.jwks.mayBring(time.Now()):
			return nil, fmt.Errorf("%w: kid %q", ErrKeyPending, clip(kid))
		case wait && j.jwks.refreshFor(ctx, kid):
			k, ok = j.jwks.keys.Load().lookup(kid)
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, clip(kid))
	}
	if k.alg != alg {
		// The defence against algorithm confusion: a key serves only the
		// algorithm it was published for.
		return nil, fmt.Errorf("%w: kid %q is a %s key, token says %s", ErrAlgorithm, clip(kid), k.alg, alg)
	}
	return k.key, nil
}

func keysOf(keys []any) []jwt.VerificationKey {
	out := make([]jwt.VerificationKey, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}

// classify turns a jwt error into one of the package's sentinels.
func (j *JWT) classify(tok *jwt.Token, tc *tokenClaims, err error) error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return ErrMalformed
	}
	if tok != nil {
		alg, _ := tok.Header["alg"].(string)
		if !slices.Contains(j.algs, alg) {
			return fmt.Errorf("%w: %q", ErrAlgorithm, clip(alg))
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// Only aud and iss are ever required here.
		if j.aud != "" && len(tc.Audience) == 0 {
			return fmt.Errorf("%w: no aud claim", ErrAudience)
		}
		if j.iss != "" && tc.Issuer == "" {
			return fmt.Errorf("%w: no iss claim", ErrIssuer)
		}
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// clip bounds token-supplied text quoted in errors, which reach the client.
func clip(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
