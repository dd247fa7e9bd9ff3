package registry_test

import (
	"fmt"

	"github.com/subsock/subsock/registry"
)

type client struct {
	name   string
	topics registry.Set // guarded by the client's own goroutine
}

func Example() {
	r := registry.New[*client](registry.Config{})
	alice, bob := &client{name: "alice"}, &client{name: "bob"}

	_, first := r.Join("news", alice, &alice.topics)
	fmt.Println("subscribe upstream to news:", first)
	r.Join("news", bob, &bob.topics)
	r.Join("sport", bob, &bob.topics)

	n := r.Range("news", func(c *client) bool {
		return true // enqueue the encoded message to c here
	})
	fmt.Println("news fan-out:", n)

	r.RemoveAll(bob, &bob.topics, func(topic string) {
		fmt.Println("unsubscribe upstream from", topic)
	})
	fmt.Printf("%+v\n", r.Stats())
	// Output:
	// subscribe upstream to news: true
	// news fan-out: 2
	// unsubscribe upstream from sport
	// {Topics:1 Subscriptions:1}
}
