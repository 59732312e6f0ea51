import torch, flatgather
model = torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
plan = flatgather.Plan.from_module(model)  # built once: order, offsets, dtype (plan.manifest())
flat = plan.gather()                       # == parameters_to_vector(model.parameters())
plan.scatter(flat.detach() * 0.5)          # copies back into the parameters' own storage
