package actors

// Geo cells: an Area is one H3 cell (github.com/uber/h3-go/v4, cgo) at AreaResolution; its identity is the cell
// index in lower-case hex, e.g. "8828308281fffff". Dashers and restaurants register with the area of their cell
// and the area's ring of neighbours (areasAround), so one area knows every dasher it may offer an order to and every
// restaurant a customer of its cell may find, without asking other areas.

import (
	"sort"

	h3 "github.com/uber/h3-go/v4"

	"github.com/platterhq/platter/messages"
)

// AreaResolution is the H3 resolution of areas: cells of about 0.74 km² (edge about 530 m), a few minutes by
// bicycle across. Changing it re-keys every area; it is a constant, not configuration.
const AreaResolution = 8

// AreaOf returns the identity of the Area that holds position p (its H3 cell at AreaResolution). p must be valid
// (see checkPosition).
func AreaOf(p *messages.Position) string {
	return h3.LatLngToCell(h3.NewLatLng(p.GetLat(), p.GetLng()), AreaResolution).String()
}

// ValidArea reports whether id names an area: a valid H3 cell at AreaResolution, written as AreaOf writes it (the
// edge checks area ids in paths with it before calling an actor).
func ValidArea(id string) bool {
	c := h3.Cell(h3.IndexFromString(id))
	return c.IsValid() && c.Resolution() == AreaResolution && c.String() == id
}

// areasAround returns the area of cell and its neighbours (the H3 grid disk of radius 1), cell first and the others
// sorted, so that senders address the same areas in the same order. cell must be valid.
func areasAround(cell string) []string {
	c := h3.Cell(h3.IndexFromString(cell))
	disk := c.GridDisk(1)
	out := make([]string, 0, len(disk))
	for _, n := range disk {
		if n != c {
			out = append(out, n.String())
		}
	}
	sort.Strings(out)
	return append([]string{cell}, out...)
}

// distanceM is the great-circle distance between a and b in metres.
func distanceM(a, b *messages.Position) float64 {
	return h3.GreatCircleDistanceM(h3.NewLatLng(a.GetLat(), a.GetLng()), h3.NewLatLng(b.GetLat(), b.GetLng()))
}
