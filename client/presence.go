package client

import (
	"context"

	"github.com/subsock/subsock/proto"
)

// Identity and presence. Every connection has an id the node gives it
// (unique in the cluster, new on every reconnect) and the user its token
// names. On a topic the node has presence for (-presence), the Conn can
// ask who is subscribed, cluster-wide; on one with join-leave events
// (-join-leave) each subscriber hears the others come and go
// (SubscribeOptions.OnJoin, OnLeave), never itself.

// Info is what the node says about this connection.
type Info struct {
	// Client is the connection's id, unique in the cluster. A reconnect
	// gets a new one.
	Client string
	// User is the token's subject; "" on an anonymous connection.
	User string
	// Node is the id of the node the connection is on.
	Node string
}

// Member is one subscriber of a presence topic: one connection, and the
// user its token names ("" when anonymous). A user with two connections
// is two members.
type Member struct {
	Client string
	User   string
}

// Info asks the node who this connection is. It waits for a connection
// if none is up.
func (c *Conn) Info(ctx context.Context) (Info, error) {
	got := make(chan Info, 1)
	err := c.query(ctx, &proto.Request{Op: proto.OpInfo}, func(r *proto.Reply) {
		got <- Info{Client: r.Client, User: r.User, Node: r.Node}
	})
	if err != nil {
		return Info{}, err
	}
	return <-got, nil
}

// Presence returns the members of topic across the cluster, sorted by user
// then client; empty, not nil, when there are none. The connection needs
// the right to subscribe to topic (else a *ServerError with
// proto.CodeForbidden), but need not be subscribed. On a topic without
// presence the *ServerError has proto.CodeNotEnabled.
func (c *Conn) Presence(ctx context.Context, topic string) ([]Member, error) {
	got := make(chan []Member, 1)
	err := c.query(ctx, &proto.Request{Op: proto.OpPresence, Topic: topic}, func(r *proto.Reply) {
		ms := make([]Member, len(r.Presence))
		for i, m := range r.Presence {
			ms[i] = Member(m)
		}
		got <- ms
	})
	if err != nil {
		return nil, err
	}
	return <-got, nil
}

// PresenceStats returns how many connections and distinct users (the
// anonymous counting as one) are subscribed to topic across the cluster:
// Presence's counts, without the list. Errors as Presence.
func (c *Conn) PresenceStats(ctx context.Context, topic string) (clients, users int, err error) {
	type counts struct{ clients, users int }
	got := make(chan counts, 1)
	err = c.query(ctx, &proto.Request{Op: proto.OpPresenceStats, Topic: topic}, func(r *proto.Reply) {
		got <- counts{r.Clients, r.Users}
	})
	if err != nil {
		return 0, 0, err
	}
	n := <-got
	return n.clients, n.users, nil
}

// memberEvent hands a join or leave to its topic's subscription; called by
// the reader.
func (c *Conn) memberEvent(join bool, topic string, m Member) {
	c.subsMu.RLock()
	sub := c.subs[topic]
	c.subsMu.RUnlock()
	switch {
	case sub == nil:
	case join && sub.onJoin != nil:
		sub.onJoin(m)
	case !join && sub.onLeave != nil:
		sub.onLeave(m)
	}
}

// unsubscribedByServer drops a subscription the server removed (a backend
// asked it to): no reconnect renews it, its queued messages are discarded,
// and OnError is told with an *UnsubscribedError. Called by the reader.
func (c *Conn) unsubscribedByServer(topic string) {
	c.subsMu.Lock()
	_, had := c.subs[topic]
	delete(c.subs, topic)
	c.subsMu.Unlock()
	if !had {
		return
	}
	c.forgetStream(topic)
	c.opts.OnError(&UnsubscribedError{Topic: topic})
}
