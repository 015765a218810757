// Command platter runs a Platter node.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "platter: not wired yet")
	os.Exit(2)
}
