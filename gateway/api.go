package gateway

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway/httpwire"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/proto"
)

// routes builds the HTTP API served beside /ws.
func (g *Gateway) routes(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", g.handlePublish)
	mux.HandleFunc("GET /healthz", g.handleHealth)
	mux.HandleFunc("GET /readyz", g.handleHealth)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		httpwire.WriteJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /history", g.handleHistory)
	mux.HandleFunc("POST /api/disconnect", g.handleDisconnect)
	mux.HandleFunc("POST /api/unsubscribe", g.handleUnsubscribe)
	mux.HandleFunc("POST /api/broadcast", g.handleBroadcast)
	mux.HandleFunc("GET /api/nodes", g.handleNodes)
	mux.HandleFunc("GET /api/presence", g.handlePresence)
	mux.HandleFunc("GET /api/presence_stats", g.handlePresence)
	mux.HandleFunc("GET /api/topics", g.handleTopics)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { httpwire.WriteJSON(w, http.StatusOK, g.Stats()) })
	return mux
}

// topicParam returns the request's topic parameter, refused (answered
// 400) when absent, repeated, invalid or reserved.
func topicParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	topic, ok := singleParam(w, r, "topic")
	if !ok {
		return "", false
	}
	if err := proto.ValidTopic(topic); err != nil {
		httpwire.RequestError(w, http.StatusBadRequest, err)
		return "", false
	}
	if policy.Reserved(topic) {
		httpwire.RequestError(w, http.StatusBadRequest, policy.ErrReserved)
		return "", false
	}
	return topic, true
}

// singleParam returns query parameter name, refusing it absent or
// repeated (?topic=a&topic=b would otherwise publish to a alone).
func singleParam(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	vs := r.URL.Query()[name]
	switch len(vs) {
	case 0:
		httpwire.APIError(w, http.StatusBadRequest, "missing query parameter "+name)
		return "", false
	case 1:
		return vs[0], true
	}
	httpwire.APIError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %s given %d times; give it once", name, len(vs)))
	return "", false
}

// handlePublish is the backend publish API: POST /publish?topic=T with the
// data as the body, JSON or MessagePack by Content-Type.
func (g *Gateway) handlePublish(w http.ResponseWriter, r *http.Request) {
	if !g.checkAPIKey(r) {
		httpwire.APIError(w, http.StatusUnauthorized, "missing or wrong API key")
		return
	}
	topic, ok := topicParam(w, r)
	if !ok {
		return
	}
	var f proto.Format
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	// curl -d sends application/x-www-form-urlencoded: what people type
	// first is read as the JSON it almost always is.
	case "application/json", "", "application/x-www-form-urlencoded", "text/plain":
		f = proto.FormatJSON
	case "application/msgpack", "application/x-msgpack", "application/vnd.msgpack":
		f = proto.FormatMsgpack
	default:
		httpwire.APIError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Type %q: use application/json or application/msgpack", mt))
		return
	}
	// The node reads a request only once all Content-Length bytes arrived
	// (bounded by MaxMessage; chunked bodies are refused), so the body is
	// copied once, straight into relay form behind its format byte.
	relay := make([]byte, 1+max(r.ContentLength, 0))
	relay[0] = byte(f)
	if _, err := io.ReadFull(r.Body, relay[1:]); err != nil {
		httpwire.APIError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if err := proto.ValidData(relay[1:], f); err != nil {
		msg := err.Error()
		var de *proto.DataError
		if errors.As(err, &de) {
			msg = de.Reason + " at offset " + strconv.Itoa(de.Offset)
		}
		httpwire.APIError(w, http.StatusBadRequest, "body is not one "+f.String()+" value: "+msg)
		return
	}
	// On the node's own connections the broker call is made off the
	// handler and the response follows in order (see publisher.go).
	if !g.pubs.inline() {
		httpwire.Later(w, func(respond func(func(http.ResponseWriter))) {
			g.publishAsync(topic, relay, func(pos broker.Position, err error) {
				respond(func(w http.ResponseWriter) { g.answerPublish(w, topic, pos, err) })
			})
		})
		return
	}
	pos, err := g.publishRelay(r.Context(), topic, relay)
	g.answerPublish(w, topic, pos, err)
}

// publishAnswer is the body of a 200 to POST /publish; a history topic's
// adds the publication's place in the stream.
type publishAnswer struct {
	Subscribers int    `json:"subscribers"`
	Offset      uint64 `json:"offset,omitempty"`
	Epoch       string `json:"epoch,omitempty"`
}

// answerPublish writes the answer to a publish whose outcome is err.
func (g *Gateway) answerPublish(w http.ResponseWriter, topic string, pos broker.Position, err error) {
	if err != nil {
		g.publishErrors.Add(1)
		httpwire.APIError(w, http.StatusServiceUnavailable, "publish failed: "+err.Error())
		return
	}
	httpwire.WriteJSON(w, http.StatusOK, publishAnswer{Subscribers: g.reg.Count(topic), Offset: pos.Offset, Epoch: pos.Epoch})
}

// handleHealth reports ok, or degraded with the broker's reason.
// health is the body of /healthz and /readyz (docs/operations.md): the
// state and, when not ok, why; never counts (those are on /stats and
// /metrics, which a public proxy blocks).
type health struct {
	Status string `json:"status"`           // ok, degraded or draining
	Broker string `json:"broker,omitempty"` // why the backbone is not usable
	Poller string `json:"poller,omitempty"` // why the event loops failed
	Check  string `json:"check,omitempty"`  // a failing AddCheck: "name: error"
}

// handleHealth is /readyz and /healthz: 200 while the node accepts work
// (broker up, loops running, not draining), 503 otherwise. /livez only
// says the process answers.
func (g *Gateway) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if g.draining.Load() {
		httpwire.WriteJSON(w, http.StatusServiceUnavailable, health{Status: "draining"})
		return
	}
	if err := g.broker.Health(); err != nil {
		httpwire.WriteJSON(w, http.StatusServiceUnavailable, health{Status: "degraded", Broker: err.Error()})
		return
	}
	if err := g.poller.Err(); err != nil {
		httpwire.WriteJSON(w, http.StatusServiceUnavailable, health{Status: "degraded", Poller: err.Error()})
		return
	}
	if failed := g.failedCheck(); failed != "" {
		httpwire.WriteJSON(w, http.StatusServiceUnavailable, health{Status: "degraded", Check: failed})
		return
	}
	httpwire.WriteJSON(w, http.StatusOK, health{Status: "ok"})
}
