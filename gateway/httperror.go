package gateway

import (
	"errors"
	"net/http"

	"github.com/subsock/subsock/proto"
)

// HTTP errors share the WebSocket err codes (docs/protocol.md), in one
// JSON shape: {"error":{"code":"invalid_topic","message":"…"}}. Two codes
// exist only over HTTP: unauthorized (401: no or wrong API key or token)
// and not_found (404).
const (
	codeUnauthorized proto.Code = "unauthorized"
	codeNotFound     proto.Code = "not_found"
)

// errorBody is the JSON of an HTTP error.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    proto.Code `json:"code"`
	Message string     `json:"message"`
}

// httpError answers status with code and message. A 503 says when to
// retry.
func httpError(w http.ResponseWriter, status int, code proto.Code, msg string) {
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="subsock"`)
	}
	writeJSON(w, status, errorBody{errorDetail{code, msg}})
}

// apiError answers status with the code that status stands for.
func apiError(w http.ResponseWriter, status int, msg string) {
	httpError(w, status, codeForStatus(status), msg)
}

// requestError answers a request refused with a protocol error (a topic
// that breaks the rules, ...) with its own code, without the Go prefix.
func requestError(w http.ResponseWriter, status int, err error) {
	var pe *proto.Error
	if errors.As(err, &pe) {
		httpError(w, status, pe.Code, pe.Msg)
		return
	}
	apiError(w, status, err.Error())
}

func codeForStatus(status int) proto.Code {
	switch status {
	case http.StatusUnauthorized:
		return codeUnauthorized
	case http.StatusForbidden:
		return proto.CodeForbidden
	case http.StatusNotFound:
		return codeNotFound
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge:
		return proto.CodeTooLarge
	case http.StatusTooManyRequests:
		return proto.CodeRateLimited
	case http.StatusServiceUnavailable:
		return proto.CodeUnavailable
	case http.StatusInternalServerError:
		return proto.CodeInternal
	}
	return proto.CodeBadRequest
}
