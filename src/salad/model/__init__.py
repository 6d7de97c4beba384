"""The models (docs/design.md §2): the speech-adapted LM, whose causal adapter maps frozen encoder frames to the LM's
input width and whose LM reads text embeddings and adapted speech together as `inputs_embeds` (`speech_lm`); and the
teacher LM with its tokenizer, trained tiny inside the pipeline or adopted pretrained (`teacher`)."""
