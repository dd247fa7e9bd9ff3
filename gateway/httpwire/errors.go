package httpwire

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/subsock/subsock/proto"
)

// HTTP errors share the WebSocket err codes (docs/protocol.md), in one
// JSON shape: {"error":{"code":"invalid_topic","message":"…"}}. Two codes
// exist only over HTTP: unauthorized (401: no or wrong API key or token)
// and not_found (404).
const (
	CodeUnauthorized proto.Code = "unauthorized"
	CodeNotFound     proto.Code = "not_found"
)

// errorBody is the JSON of an HTTP error.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    proto.Code `json:"code"`
	Message string     `json:"message"`
}

// Error answers status with code and message. A 503 says when to
// retry.
func Error(w http.ResponseWriter, status int, code proto.Code, msg string) {
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="subsock"`)
	}
	WriteJSON(w, status, errorBody{errorDetail{code, msg}})
}

// APIError answers status with the code that status stands for.
func APIError(w http.ResponseWriter, status int, msg string) {
	Error(w, status, CodeForStatus(status), msg)
}

// RequestError answers a request refused with a protocol error (a topic
// that breaks the rules, ...) with its own code, without the Go prefix.
func RequestError(w http.ResponseWriter, status int, err error) {
	var pe *proto.Error
	if errors.As(err, &pe) {
		Error(w, status, pe.Code, pe.Msg)
		return
	}
	APIError(w, status, err.Error())
}

// CodeForStatus is the err code an HTTP status stands for.
func CodeForStatus(status int) proto.Code {
	switch status {
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return proto.CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
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

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorJSON is the body Error writes, for an answer built by hand.
func ErrorJSON(code proto.Code, msg string) []byte {
	b, _ := json.Marshal(errorBody{errorDetail{code, msg}})
	return append(b, '\n')
}
