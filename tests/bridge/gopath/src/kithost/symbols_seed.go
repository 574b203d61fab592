//go:build yaegihost && kitseed
// +build yaegihost,kitseed

package main

func variantTypes() []interface{} { return nil }
