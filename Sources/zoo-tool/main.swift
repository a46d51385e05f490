import Zoo
print(try! Graph(name:"x", inputShape:[1,28,28], output:"a", nodes:[Node(name:"a", op:.conv2d(.init(inChannels:1,outChannels:6,kernel:[5,5],padding:.init(2))), inputs:["input"])]).inferLayers().map{$0.outputShape})
