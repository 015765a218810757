package actors

import (
	"math"
	"testing"

	h3 "github.com/uber/h3-go/v4"

	"github.com/platterhq/platter/messages"
)

// sfCentre is a point in San Francisco the dispatch and search tests build around.
var sfCentre = &messages.Position{Lat: 37.7749, Lng: -122.4194}

// cellCentre is the centre of the area (H3 cell) id.
func cellCentre(t *testing.T, id string) *messages.Position {
	t.Helper()
	ll := h3.CellToLatLng(h3.Cell(h3.IndexFromString(id)))
	return &messages.Position{Lat: ll.Lat, Lng: ll.Lng}
}

// offset returns the point north metres north and east metres east of p (small distances).
func offset(p *messages.Position, north, east float64) *messages.Position {
	const metresPerDegree = 111_320.0
	return &messages.Position{
		Lat: p.GetLat() + north/metresPerDegree,
		Lng: p.GetLng() + east/(metresPerDegree*math.Cos(p.GetLat()*math.Pi/180)),
	}
}

func TestAreaOf(t *testing.T) {
	id := AreaOf(sfCentre)
	if !ValidArea(id) {
		t.Fatalf("AreaOf(%v) = %q, not a valid area", sfCentre, id)
	}
	if got := h3.Cell(h3.IndexFromString(id)).Resolution(); got != AreaResolution {
		t.Errorf("resolution %d, want %d", got, AreaResolution)
	}
	if again := AreaOf(cellCentre(t, id)); again != id {
		t.Errorf("the centre of %s is in %s", id, again)
	}
	for _, bad := range []string{"", "zz", "8828308281fffff0", "8928308280fffff" /* resolution 9 */, "8828308281FFFFF" /* not as written */} {
		if ValidArea(bad) {
			t.Errorf("ValidArea(%q) = true", bad)
		}
	}
}

func TestAreasAround(t *testing.T) {
	id := AreaOf(sfCentre)
	around := areasAround(id)
	if len(around) != 7 || around[0] != id {
		t.Fatalf("areasAround(%s) = %v, want the cell then its 6 neighbours", id, around)
	}
	seen := map[string]bool{}
	for i, a := range around {
		if !ValidArea(a) || seen[a] {
			t.Fatalf("areasAround: %q invalid or repeated", a)
		}
		seen[a] = true
		if i > 1 && around[i-1] > a {
			t.Errorf("neighbours not sorted: %v", around[1:])
		}
		if i > 0 && !h3.Cell(h3.IndexFromString(id)).IsNeighbor(h3.Cell(h3.IndexFromString(a))) {
			t.Errorf("%s is not a neighbour of %s", a, id)
		}
	}
	// Symmetry: every neighbour counts the cell among its own areas (dashers register both ways).
	for _, a := range around[1:] {
		found := false
		for _, b := range areasAround(a) {
			found = found || b == id
		}
		if !found {
			t.Errorf("%s is around %s but not the other way", a, id)
		}
	}
}

func TestDistanceM(t *testing.T) {
	north := offset(sfCentre, 1000, 0)
	if d := distanceM(sfCentre, north); math.Abs(d-1000) > 5 {
		t.Errorf("1 km north measured %.1f m", d)
	}
	if d := distanceM(sfCentre, sfCentre); d != 0 {
		t.Errorf("distance to itself %.3f", d)
	}
}
