package actors

import (
	"slices"
	"strings"
	"testing"

	"github.com/platterhq/platter/messages"
)

func listing(id, name, cuisine string, p *messages.Position, items ...*messages.MenuItem) *messages.RestaurantListed {
	return &messages.RestaurantListed{RestaurantId: id, Name: name, Cuisine: cuisine, Position: p, Cell: AreaOf(p), Menu: items}
}

func item(id, name string, price int64, tags ...string) *messages.MenuItem {
	return &messages.MenuItem{Id: id, Name: name, PriceCents: price, Tags: tags}
}

// searchIndex: restaurants at increasing distances north of sfCentre.
func searchIndex() map[string]*messages.RestaurantListed {
	return map[string]*messages.RestaurantListed{
		"r_thai_far":  listing("r_thai_far", "Bangkok Street", "Thai", offset(sfCentre, 900, 0), item("m1", "Pad Thai", 1300, "noodles", "spicy")),
		"r_thai_near": listing("r_thai_near", "Siam Kitchen", "thai", offset(sfCentre, 100, 0), item("m1", "Pad thai", 1250, "noodles"), item("m2", "Green curry", 1400, "spicy")),
		"r_named":     listing("r_named", "Pad Thai Palace", "Asian", offset(sfCentre, 500, 0), item("m1", "Spring rolls", 600)),
		"r_pizza":     listing("r_pizza", "Tony's", "Pizza", offset(sfCentre, 50, 0), item("p1", "Margherita", 1100, "vegetarian"), item("p2", "Diavola", 1300, "spicy")),
	}
}

func resultIDs(res *messages.SearchResults) []string {
	var ids []string
	for _, h := range res.GetResults() {
		ids = append(ids, h.GetRestaurantId())
	}
	return ids
}

func TestSearchRanksByRelevanceThenDistance(t *testing.T) {
	idx := searchIndex()
	cases := []struct {
		terms []string
		want  []string
	}{
		// The name matches weigh most; the two menus that have pad thai follow, nearest first.
		{[]string{"pad thai"}, []string{"r_named", "r_thai_near", "r_thai_far"}},
		// Cuisine (3) beats item name (2); equal relevance ranks by distance.
		{[]string{"thai"}, []string{"r_named", "r_thai_near", "r_thai_far"}},
		// A tag matches with the least weight; distance breaks the tie.
		{[]string{"spicy"}, []string{"r_pizza", "r_thai_near", "r_thai_far"}},
		// Two terms matched beat one, whatever the distance.
		{[]string{"spicy", "noodles"}, []string{"r_thai_near", "r_thai_far", "r_pizza"}},
		// Case, punctuation and a prefix of the last word.
		{[]string{"TONY"}, []string{"r_pizza"}},
		{[]string{"green cur"}, []string{"r_thai_near"}},
		{[]string{"sushi"}, nil},
		// No terms: everything, nearest first.
		{nil, []string{"r_pizza", "r_thai_near", "r_named", "r_thai_far"}},
	}
	for _, c := range cases {
		q := &messages.SearchRestaurants{Terms: c.terms, Position: sfCentre}
		if err := validateSearch(q); err != nil {
			t.Fatalf("%v: %v", c.terms, err)
		}
		if got := resultIDs(search(idx, q)); !slices.Equal(got, c.want) {
			t.Errorf("search %q = %v, want %v", c.terms, got, c.want)
		}
	}
}

func TestSearchListsTheMatchingItems(t *testing.T) {
	res := search(searchIndex(), &messages.SearchRestaurants{Terms: []string{"spicy", "pad thai"}, Position: sfCentre})
	var near *messages.SearchHit
	for _, h := range res.GetResults() {
		if h.GetRestaurantId() == "r_thai_near" {
			near = h
		}
	}
	if near == nil {
		t.Fatal("r_thai_near not found")
	}
	var items []string
	for _, it := range near.GetItems() {
		items = append(items, it.GetMenuItemId())
	}
	if !slices.Equal(items, []string{"m1", "m2"}) || near.GetItems()[0].GetPriceCents() != 1250 || near.GetItems()[0].GetName() != "Pad thai" {
		t.Errorf("items %v", near.GetItems())
	}
	if near.GetTermsMatched() != 2 || near.GetScore() != weightItemTag+weightItemName || near.GetDistanceM() < 95 || near.GetDistanceM() > 105 {
		t.Errorf("hit %v", near)
	}
	if near.GetName() != "Siam Kitchen" || near.GetCuisine() != "thai" {
		t.Errorf("hit %v", near)
	}
}

func TestSearchLimit(t *testing.T) {
	idx := searchIndex()
	if got := resultIDs(search(idx, &messages.SearchRestaurants{Position: sfCentre, Limit: 2})); !slices.Equal(got, []string{"r_pizza", "r_thai_near"}) {
		t.Errorf("limit 2: %v", got)
	}
	for i := range DefaultSearchLimit + 5 {
		id := "r_" + strings.Repeat("z", i+1)
		idx[id] = listing(id, "Z", "Z", sfCentre)
	}
	if got := search(idx, &messages.SearchRestaurants{Position: sfCentre}); len(got.GetResults()) != DefaultSearchLimit {
		t.Errorf("default limit: %d results", len(got.GetResults()))
	}
}

func TestValidateSearch(t *testing.T) {
	tooMany := make([]string, MaxSearchTerms+1)
	for i := range tooMany {
		tooMany[i] = "x"
	}
	for name, q := range map[string]*messages.SearchRestaurants{
		"no position":    {Terms: []string{"x"}},
		"bad latitude":   {Position: &messages.Position{Lat: 91}},
		"too many terms": {Terms: tooMany, Position: sfCentre},
		"long term":      {Terms: []string{strings.Repeat("a", MaxSearchTermLen+1)}, Position: sfCentre},
		"blank term":     {Terms: []string{" -- "}, Position: sfCentre},
		"bad utf-8":      {Terms: []string{"\xff"}, Position: sfCentre},
		"limit":          {Position: sfCentre, Limit: MaxSearchLimit + 1},
	} {
		if err := validateSearch(q); codeOf(t, errOrNil(err)) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWordsAndContains(t *testing.T) {
	if got := words("  Pad-Thai, (spicy!) Café 2 "); !slices.Equal(got, []string{"pad", "thai", "spicy", "café", "2"}) {
		t.Errorf("words = %v", got)
	}
	field := words("Thai green curry")
	for term, want := range map[string]bool{
		"green curry": true, "green cur": true, "gre": true, "thai curry": false, "curry green": false, "reen": false,
	} {
		if got := contains(field, words(term)); got != want {
			t.Errorf("contains(%q) = %v", term, got)
		}
	}
	if contains(field, nil) {
		t.Error("empty term matched")
	}
}

func TestAreaListsRestaurants(t *testing.T) {
	r := newAreaRun(t)
	l := listing("r_1", "Siam", "Thai", sfCentre, item("m1", "Pad thai", 1200))
	o := r.deliver(l)
	if len(o.events) != 1 || len(r.state.GetRestaurants()) != 1 {
		t.Fatalf("listing: %v", o.events)
	}
	if o = r.deliver(l); len(o.events) != 0 {
		t.Errorf("the same listing again: %v", o.events)
	}
	l2 := listing("r_1", "Siam", "Thai", sfCentre, item("m1", "Pad thai", 1300))
	if o = r.deliver(l2); len(o.events) != 1 || r.state.GetRestaurants()["r_1"].GetMenu()[0].GetPriceCents() != 1300 {
		t.Errorf("new menu: %v", o.events)
	}
}
