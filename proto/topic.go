package proto

import "strconv"

// MaxTopicLen is the longest topic in bytes.
const MaxTopicLen = 256

// ValidTopic reports whether topic may be subscribed to or published on:
// 1–256 bytes of printable ASCII (0x21–0x7E), segments separated by '.',
// no empty segment, and no segment that is exactly "*" or ">" (those are
// wildcards in authorisation patterns, never part of a concrete topic).
// The error is an *Error with CodeInvalidTopic naming the topic.
func ValidTopic(topic string) error {
	// Returning checkTopic's result directly would turn a nil *Error into
	// a non-nil error.
	if e := checkTopic(topic); e != nil {
		return e
	}
	return nil
}

func checkTopic(topic string) *Error {
	if len(topic) == 0 {
		return &Error{Code: CodeInvalidTopic, Msg: "topic is empty"}
	}
	if len(topic) > MaxTopicLen {
		return topicError(topic, "is longer than "+strconv.Itoa(MaxTopicLen)+" bytes")
	}
	seg := 0 // start of the current segment
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c == '.':
			if e := checkSegment(topic, seg, i); e != nil {
				return e
			}
			seg = i + 1
		case c < 0x21 || c > 0x7e:
			return topicError(topic, "has "+describeByte(c)+" at offset "+strconv.Itoa(i)+"; topics are printable ASCII without spaces")
		}
	}
	return checkSegment(topic, seg, len(topic))
}

func checkSegment(topic string, start, end int) *Error {
	switch topic[start:end] {
	case "":
		return topicError(topic, "has an empty segment")
	case "*", ">":
		return topicError(topic, "has the wildcard segment "+strconv.Quote(topic[start:end])+"; wildcards are not allowed in topics")
	}
	return nil
}

func describeByte(c byte) string {
	if c == ' ' {
		return "a space"
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}

func topicError(topic, reason string) *Error {
	return &Error{Code: CodeInvalidTopic, Msg: "topic " + quoteShort([]byte(topic)) + " " + reason}
}
