import torch, flatgather
model = torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
plan = flatgather.Plan.from_module(model)  # built once: order, offsets, dtype (plan.manifest())
flat = plan.gather()                       # == parameters_to_vector(model.parameters())
print(f"{flatgather.build_info()}; library {flatgather.library_path()}")
print(f"gathered {len(plan)} parameters {plan.names} into one flat {flat.dtype} buffer of "
      f"{flat.numel()} elements at offsets {plan.offsets}")
plan.scatter(flat.detach() * 0.5)          # copies back into the parameters' own storage
first = model[0].weight.reshape(-1)[0].item()
print(f"scattered flat * 0.5 back: {plan.names[0]}[0] went {flat[0].item():.4f} -> {first:.4f}")
