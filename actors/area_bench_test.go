package actors

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	h3 "github.com/uber/h3-go/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// benchArea is an area under load: 200 online dashers of capacity 1 in the cell and its neighbours, 100 open
// dispatches each holding one of them (the other 100 are free), and MaxEndedDispatches ended dispatches.
type benchArea struct {
	self  string
	cfg   WorkflowConfig
	now   time.Time
	state *messages.AreaState
	index *areaIndex
}

func newBenchArea(b *testing.B) *benchArea {
	b.Helper()
	s := &messages.AreaState{}
	a := &benchArea{self: AreaOf(sfCentre), cfg: dispatchConfig(), now: testNow, state: s, index: newAreaIndex(s)}
	rng := rand.New(rand.NewPCG(1, 2))
	around := areasAround(a.self)
	for i := range 200 {
		p := offset(benchCellCentre(around[i%len(around)]), rng.Float64()*400-200, rng.Float64()*400-200)
		a.deliver(b, &messages.DasherStatusChanged{DasherId: fmt.Sprintf("d_%03d", i), Online: true, Position: p, Cell: AreaOf(p),
			FreeCapacity: 1, At: timestamppb.New(a.now)})
	}
	pickup := benchCellCentre(a.self)
	setup := a.cfg
	setup.WaveSize, setup.OpeningWaveSize = 1, 1
	for i := range MaxEndedDispatches {
		id := fmt.Sprintf("o_ended_%03d", i)
		a.deliverWith(b, setup, &messages.OrderAccepted{OrderId: id, RestaurantId: "r_1", Pickup: pickup, Dropoff: offset(pickup, 800, 800)})
		a.deliver(b, &messages.OrderCancelled{OrderId: id})
	}
	for i := range 100 {
		a.now = a.now.Add(100 * time.Millisecond)
		a.deliverWith(b, setup, &messages.OrderAccepted{OrderId: fmt.Sprintf("o_open_%03d", i), RestaurantId: "r_1", Pickup: pickup,
			Dropoff: offset(pickup, 800, 800)})
	}
	open := 0
	for _, d := range a.state.GetDispatches() {
		if !d.GetEnded() && len(d.GetOpen()) == 1 {
			open++
		}
	}
	if open != 100 || len(a.state.GetDashers()) != 200 {
		b.Fatalf("%d open dispatches with an offer, %d dashers", open, len(a.state.GetDashers()))
	}
	return a
}

func (a *benchArea) deliver(b *testing.B, p proto.Message) { a.deliverWith(b, a.cfg, p) }

func (a *benchArea) deliverWith(b *testing.B, cfg WorkflowConfig, p proto.Message) {
	b.Helper()
	out, err := decideDeliverArea(a.self, a.state, a.index, p, cfg, a.now)
	if err != nil {
		b.Fatal(err)
	}
	for _, ev := range out {
		if kindEvent(ev) {
			if err := applyArea(a.state, ev); err != nil {
				b.Fatal(err)
			}
			a.index.applied(a.state, ev)
		}
	}
}

// kindEvent tells the Area's own events from the entity's (sends, timers), which applyArea does not fold.
func kindEvent(ev proto.Message) bool {
	switch ev.(type) {
	case *messages.OutboxAdded, *messages.TimerSet, *messages.TimerCleared:
		return false
	}
	return true
}

// benchDecide runs one decision on the unchanged state per iteration (decisions are pure: the state stays as built).
func benchDecide(b *testing.B, p proto.Message) {
	a := newBenchArea(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := decideDeliverArea(a.self, a.state, a.index, p, a.cfg, a.now); err != nil {
			b.Fatal(err)
		}
	}
}

// A free dasher moved: the most frequent message (each dasher reports to seven areas).
func BenchmarkAreaDeliverDasherMoved(b *testing.B) {
	benchDecide(b, &messages.DasherStatusChanged{DasherId: "d_150", Online: true, Position: offset(sfCentre, 50, 50),
		Cell: AreaOf(offset(sfCentre, 50, 50)), FreeCapacity: 1, At: timestamppb.New(testNow)})
}

// A new order: a wave of WaveSize offers to the nearest free dashers (dispatchConfig: the opening wave is whole).
func BenchmarkAreaDeliverOrderAccepted(b *testing.B) {
	benchDecide(b, &messages.OrderAccepted{OrderId: "o_new", RestaurantId: "r_1", Pickup: sfCentre, Dropoff: offset(sfCentre, 800, 800)})
}

// An open dispatch found its dasher: the dispatch ends.
func BenchmarkAreaDeliverDasherAssigned(b *testing.B) {
	a := newBenchArea(b)
	disp := a.state.GetDispatches()["o_open_050"]
	benchDecide(b, &messages.DasherAssigned{OrderId: "o_open_050", DasherId: disp.GetOpen()[0].GetDasherId()})
}

// benchCellCentre is the centre of the area id (cellCentre without a *testing.T).
func benchCellCentre(id string) *messages.Position {
	ll := h3.CellToLatLng(h3.Cell(h3.IndexFromString(id)))
	return &messages.Position{Lat: ll.Lat, Lng: ll.Lng}
}
