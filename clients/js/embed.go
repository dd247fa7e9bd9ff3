// Package js embeds the subsock browser client (subsock.js, an ES module with no build step)
// and its vendored MessagePack library, so a node can serve them: see demo.Handler, which
// mounts them at /js/.
package js

import (
	"embed"
	"io/fs"
)

//go:embed subsock.js vendor
var files embed.FS

// FS returns the client's files: subsock.js at the root and vendor/ beside it, laid out as the
// module's relative imports expect.
func FS() fs.FS { return files }
