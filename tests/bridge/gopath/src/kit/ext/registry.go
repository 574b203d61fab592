package ext

// Registry is the test side of the API: what an extension registered during
// Init, and a way to fire events at it the way KIT's runner does (each
// handler called with the typed event and the Context, in registration order).
type Registry struct {
	Handlers map[string][]Handler
	Options  []OptionDef
	Tools    []ToolDef
	Commands []CommandDef
}

// Handler is a registered extension handler with its event type erased.
type Handler func(ev any, ctx Context) any

func (r *Registry) add(eventType string, h Handler) {
	if r.Handlers == nil {
		r.Handlers = map[string][]Handler{}
	}
	r.Handlers[eventType] = append(r.Handlers[eventType], h)
}

// Fire calls every handler registered for eventType and returns how many ran.
func (r *Registry) Fire(eventType string, ev any, ctx Context) int {
	hs := r.Handlers[eventType]
	for _, h := range hs {
		h(ev, ctx)
	}
	return len(hs)
}

// NewTestAPI returns an API whose registrations land in r (KIT has a
// function of the same name for its own extension tests).
func NewTestAPI(r *Registry) API {
	var a API
	wireCommon(&a, r)
	wireVariant(&a, r)
	return a
}
