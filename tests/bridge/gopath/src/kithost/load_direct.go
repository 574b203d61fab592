//go:build !yaegihost
// +build !yaegihost

package main

import (
	"fmt"

	"kit/ext"
)

// Extensions are compiled into this program (go build) or interpreted along
// with it (yaegi run): the bridge's Init, and the reference extensions,
// copied in as InitEmpty and InitNaive.
const loaderName = "direct"

func loadExtension(name string, api ext.API) error {
	switch name {
	case "bridge":
		Init(api)
	case "empty":
		InitEmpty(api)
	case "naive":
		InitNaive(api)
	default:
		return fmt.Errorf("unknown extension %q", name)
	}
	return nil
}
