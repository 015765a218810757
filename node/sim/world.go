package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	h3 "github.com/uber/h3-go/v4"
)

// The city: the H3 cells (at the node's area resolution) within GridRadius of the centre's cell. Restaurants,
// customers and dashers stand at points in those cells; dashers move from cell to neighbouring cell.

// cellResolution is the resolution of the node's areas (actors.AreaResolution): one area per cell.
const cellResolution = 8

// world is the simulated city. It is read-only after newWorld.
type world struct {
	cells     []h3.Cell
	inWorld   map[h3.Cell]bool
	cuisines  []string
	menuNames map[string][]string
}

func newWorld(center Position, radius int) *world {
	c := h3.LatLngToCell(h3.NewLatLng(center.Lat, center.Lng), cellResolution)
	w := &world{cells: c.GridDisk(radius), inWorld: map[h3.Cell]bool{}, menuNames: menuNames}
	for _, cell := range w.cells {
		w.inWorld[cell] = true
	}
	for cuisine := range menuNames {
		w.cuisines = append(w.cuisines, cuisine)
	}
	slices.Sort(w.cuisines)
	return w
}

// pointIn returns a point near the centre of cell (within about 150 m, well inside a 530 m cell edge).
func pointIn(rng *rand.Rand, cell h3.Cell) Position {
	ll := cell.LatLng()
	const jitterM = 150.0
	r, a := jitterM*math.Sqrt(rng.Float64()), 2*math.Pi*rng.Float64()
	dLat := r * math.Cos(a) / 111_320
	dLng := r * math.Sin(a) / (111_320 * math.Cos(ll.Lat*math.Pi/180))
	return Position{Lat: round6(ll.Lat + dLat), Lng: round6(ll.Lng + dLng)}
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// randomCell picks a cell of the city.
func (w *world) randomCell(rng *rand.Rand) h3.Cell { return w.cells[rng.IntN(len(w.cells))] }

// neighbour picks a cell next to c that is in the city (c itself when it has none).
func (w *world) neighbour(rng *rand.Rand, c h3.Cell) h3.Cell {
	var next []h3.Cell
	for _, n := range c.GridDisk(1) {
		if n != c && w.inWorld[n] {
			next = append(next, n)
		}
	}
	if len(next) == 0 {
		return c
	}
	return next[rng.IntN(len(next))]
}

// menuNames are the dishes of each cuisine; every item is tagged with its cuisine, so a search for the cuisine
// lists them.
var menuNames = map[string][]string{
	"thai":    {"Pad Thai", "Green Curry", "Tom Yum", "Mango Sticky Rice"},
	"pizza":   {"Margherita", "Diavola", "Quattro Formaggi", "Calzone"},
	"sushi":   {"Salmon Nigiri", "Tuna Roll", "California Roll", "Miso Soup"},
	"burgers": {"Cheeseburger", "Veggie Burger", "Fries", "Milkshake"},
	"tacos":   {"Al Pastor", "Carnitas", "Fish Taco", "Guacamole"},
	"ramen":   {"Tonkotsu", "Shoyu", "Miso Ramen", "Gyoza"},
}

// menu is the menu of a restaurant of a cuisine.
func (w *world) menu(rng *rand.Rand, cuisine string) []MenuItem {
	var items []MenuItem
	for i, name := range w.menuNames[cuisine] {
		tags := []string{cuisine}
		if rng.IntN(3) == 0 {
			tags = append(tags, "spicy")
		}
		items = append(items, MenuItem{
			ID: fmt.Sprintf("%s-%d", cuisine, i+1), Name: name, Description: strings.ToLower(name) + ", freshly made",
			PriceCents: int64(600 + 50*rng.IntN(30)), Tags: tags,
		})
	}
	return items
}
